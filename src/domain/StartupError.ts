import { Schema } from "effect"

/** The registry cannot start (bad flag value, keys file without keys, unusable -dir, port in use); one line. */
export class StartupError extends Schema.TaggedError<StartupError>()("StartupError", {
  message: Schema.String
}) {}
