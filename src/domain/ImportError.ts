import { Schema } from "effect"

/** `deploy-registry import` cannot (or must not) import: one line naming what and why; nothing was written. */
export class ImportError extends Schema.TaggedError<ImportError>()("ImportError", {
  message: Schema.String
}) {}
