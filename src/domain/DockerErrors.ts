// Failures of deploy-from-docker. `message` is the one line the program prints.
import { Schema } from "effect"

/** The `docker save` stream is malformed, unsupported, or not exactly one image. */
export class ArchiveError extends Schema.TaggedError<ArchiveError>()("ArchiveError", {
  message: Schema.String
}) {}

/** A registry command answered with a failure; `output` is what the registry printed. */
export class RegistryCommandFailed extends Schema.TaggedError<RegistryCommandFailed>()("RegistryCommandFailed", {
  command: Schema.String,
  output: Schema.String
}) {
  get message() {
    const out = this.output.trim().split("\n")[0] ?? ""
    return `registry refused "${this.command}": ${out === "" ? "no output" : out}`
  }
}

/** Local I/O failed (temp directory, spool files). */
export class LocalIoError extends Schema.TaggedError<LocalIoError>()("LocalIoError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}
