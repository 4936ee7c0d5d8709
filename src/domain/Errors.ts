// Every failure a user can see is one of these. `message` is the one line the console prints;
// wording follows the original tools where they had one (DESIGN.md, wire contract).
import { Schema } from "effect"
import type { LayerRefused } from "./ArchiveErrors.js"

export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

export class UnknownCommand extends Schema.TaggedError<UnknownCommand>()("UnknownCommand", {
  command: Schema.String
}) {
  get message() {
    return `unknown command "${this.command}"`
  }
}

export class ConfigurationNotFound extends Schema.TaggedError<ConfigurationNotFound>()("ConfigurationNotFound", {
  name: Schema.String
}) {
  get message() {
    return `configuration "${this.name}" not found`
  }
}

export class ComponentNotFound extends Schema.TaggedError<ComponentNotFound>()("ComponentNotFound", {
  name: Schema.String
}) {
  get message() {
    return `component "${this.name}" not found`
  }
}

export class VersionNotFound extends Schema.TaggedError<VersionNotFound>()("VersionNotFound", {
  component: Schema.String,
  version: Schema.String
}) {
  get message() {
    return `no version "${this.version}" for component "${this.component}" found`
  }
}

export class UploadNotFound extends Schema.TaggedError<UploadNotFound>()("UploadNotFound", {
  hash: Schema.String
}) {
  get message() {
    return "no uploaded file with given hash found"
  }
}

export class VersionExists extends Schema.TaggedError<VersionExists>()("VersionExists", {
  component: Schema.String,
  version: Schema.String
}) {
  get message() {
    return `version "${this.version}" already exists`
  }
}

export class ConfigurationExists extends Schema.TaggedError<ConfigurationExists>()("ConfigurationExists", {
  name: Schema.String
}) {
  get message() {
    return `configuration "${this.name}" already exists, use replaceconf to change it`
  }
}

export class DuplicateComponent extends Schema.TaggedError<DuplicateComponent>()("DuplicateComponent", {
  component: Schema.String
}) {
  get message() {
    return `component "${this.component}" is used more than once`
  }
}

export class LayerNotFound extends Schema.TaggedError<LayerNotFound>()("LayerNotFound", {
  configuration: Schema.String,
  component: Schema.String
}) {
  get message() {
    return `configuration "${this.configuration}" has no layer of component "${this.component}"`
  }
}

export class VersionInUse extends Schema.TaggedError<VersionInUse>()("VersionInUse", {
  configuration: Schema.String
}) {
  get message() {
    return `version is used by configuration "${this.configuration}"`
  }
}

export class ComponentInUse extends Schema.TaggedError<ComponentInUse>()("ComponentInUse", {
  configuration: Schema.String
}) {
  get message() {
    return `component is used by configuration "${this.configuration}"`
  }
}

export class ForceRequired extends Schema.TaggedError<ForceRequired>()("ForceRequired", {}) {
  get message() {
    return "Run command with -force flag to confirm removal"
  }
}

/** Optimistic concurrency: `-expect HASH` did not match the current state. */
export class StaleExpect extends Schema.TaggedError<StaleExpect>()("StaleExpect", {
  name: Schema.String,
  expected: Schema.String,
  actual: Schema.String
}) {
  get message() {
    return `configuration "${this.name}" has hash ${this.actual}, not the expected ${this.expected}; nothing changed`
  }
}

export class RollbackUnavailable extends Schema.TaggedError<RollbackUnavailable>()("RollbackUnavailable", {
  message: Schema.String
}) {}

/** A change (changeconf, bumpconf, replaceconf, rollback, another rollout) while a rollout of the configuration runs. */
export class RolloutInProgress extends Schema.TaggedError<RolloutInProgress>()("RolloutInProgress", {
  name: Schema.String,
  to: Schema.String
}) {
  get message() {
    return `configuration "${this.name}" has a rollout to ${this.to} in progress; see rollout -name ${this.name} -status, or end it with -abort`
  }
}

/** A rollout command about a rollout that does not exist or cannot do that. */
export class RolloutRefused extends Schema.TaggedError<RolloutRefused>()("RolloutRefused", {
  message: Schema.String
}) {}

/** A signature `addsig` will not attach (does not verify, another state, older than the state). */
export class SignatureRejected extends Schema.TaggedError<SignatureRejected>()("SignatureRejected", {
  message: Schema.String
}) {}

/** A configuration document that does not decode; the message names the field. */
export class DocumentError extends Schema.TaggedError<DocumentError>()("DocumentError", {
  message: Schema.String
}) {}

/** Something went wrong below the command layer (database, disk). Never shows internal paths. */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  get message() {
    return `internal error: ${this.reason}`
  }
}

/** The failures an operator command can end with; each prints as its `message`. */
export type CommandError =
  | UsageError
  | UnknownCommand
  | ConfigurationNotFound
  | ComponentNotFound
  | VersionNotFound
  | UploadNotFound
  | VersionExists
  | ConfigurationExists
  | DuplicateComponent
  | LayerNotFound
  | VersionInUse
  | ComponentInUse
  | ForceRequired
  | StaleExpect
  | RollbackUnavailable
  | SignatureRejected
  | RolloutInProgress
  | RolloutRefused
  | StorageError
  | LayerRefused
