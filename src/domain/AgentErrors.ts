// Failures of the agent's cycle. Each carries one line a person can act on (`message`); a failed
// cycle is logged with it and retried with backoff (DESIGN.md "Agent cycle").
import { Schema } from "effect"

/** The registry could not be reached or refused us (connect, host key, auth, SFTP, missing config). */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  message: Schema.String
}) {}

/** A downloaded blob does not hash to the name it was fetched by; the file was discarded. */
export class HashMismatch extends Schema.TaggedError<HashMismatch>()("HashMismatch", {
  expected: Schema.String,
  actual: Schema.String
}) {
  get message() {
    return `downloaded blob ${this.expected} has sha256 ${this.actual}; discarded`
  }
}

/** Local cache I/O failed. */
export class CacheError extends Schema.TaggedError<CacheError>()("CacheError", {
  message: Schema.String
}) {}

/** An archive entry we refuse to extract (it would escape the tree, or is malformed). */
export class UnsafeArchive extends Schema.TaggedError<UnsafeArchive>()("UnsafeArchive", {
  layer: Schema.String,
  entry: Schema.String,
  reason: Schema.String
}) {
  get message() {
    return `layer ${this.layer}: refused entry ${JSON.stringify(this.entry)}: ${this.reason}`
  }
}

/** Unpacking failed for a reason other than a refused entry (I/O, corrupt gzip/tar). */
export class UnpackError extends Schema.TaggedError<UnpackError>()("UnpackError", {
  message: Schema.String
}) {}

/** The deploy script could not be started or did not exit 0. */
export class ScriptFailed extends Schema.TaggedError<ScriptFailed>()("ScriptFailed", {
  configuration: Schema.String,
  hash: Schema.String,
  status: Schema.String,
  /** The script's last output lines (bounded), for the report. */
  lines: Schema.optional(Schema.Array(Schema.String))
}) {
  get message() {
    return `deploy script failed for configuration ${this.configuration} (${this.hash}): ${this.status}`
  }
}

/** The state file could not be read or written; `foreign`: it belongs to another configuration. */
export class StateFileError extends Schema.TaggedError<StateFileError>()("StateFileError", {
  message: Schema.String,
  foreign: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {}

/** Another agent already holds the lock on this -dir (or on this -state file). */
export class LockHeld extends Schema.TaggedError<LockHeld>()("LockHeld", {
  dir: Schema.String,
  what: Schema.optionalWith(Schema.Literal("directory", "state file"), { default: () => "directory" as const })
}) {
  get message() {
    return `another deploy-agent is already running on ${this.what} ${this.dir}`
  }
}

/** The lock could not be taken for another reason (directory missing, permissions). */
export class LockFailed extends Schema.TaggedError<LockFailed>()("LockFailed", {
  message: Schema.String
}) {}
