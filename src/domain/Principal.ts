import { Schema } from "effect"

/** Who made a change: the SSH user and the key that authenticated (recorded in history). */
export class Principal extends Schema.Class<Principal>("Principal")({
  user: Schema.String,
  fingerprint: Schema.String,
  comment: Schema.String
}) {
  /** `SHA256:… comment` as history prints it. */
  get label(): string {
    return this.comment ? `${this.fingerprint} ${this.comment}` : this.fingerprint
  }
}
