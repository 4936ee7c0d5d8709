// Failures of reading a layer (a gzip'd tar): the same classes and messages at every door — the
// agent's unpacker, the registry's addver, deployctl's check, deploy-from-docker.
import { Schema } from "effect"
import { quote as quoteName } from "./LogText.js"

/**
 * The layer is refused: malformed, ambiguous (two readers could see different trees) or over a
 * limit. `entry` is the entry's name as the archive gives it, "" when no entry is concerned.
 */
export class LayerRefused extends Schema.TaggedError<LayerRefused>()("LayerRefused", {
  layer: Schema.String,
  entry: Schema.String,
  reason: Schema.String
}) {
  get message() {
    return this.entry === ""
      ? `layer ${this.layer}: ${this.reason}`
      : `layer ${this.layer}: refused entry ${quoteName(this.entry)}: ${this.reason}`
  }
}

/** The layer's file could not be read (I/O, not content). */
export class LayerUnreadable extends Schema.TaggedError<LayerUnreadable>()("LayerUnreadable", {
  layer: Schema.String,
  reason: Schema.String
}) {
  get message() {
    return `layer ${this.layer}: cannot read: ${this.reason}`
  }
}
