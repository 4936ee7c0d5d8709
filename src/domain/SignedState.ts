// What an operator signs for a configuration state (SSHSIG, namespace deploy-tools): a short canonical
// text naming the configuration, its hash and when it was signed. The time lets an agent refuse a state
// signed before the one it runs (an old signature replayed to force a downgrade). `deployctl sign
// -print-message` prints it, so it can be signed with `ssh-keygen -Y sign` or a hardware key.
import { Schema } from "effect"
import { configurationNameProblem, sha256Problem } from "./Names.js"
import { rfc3339Seconds } from "./Time.js"

export class SignedState extends Schema.Class<SignedState>("SignedState")({
  name: Schema.String,
  hash: Schema.String,
  /** Whole seconds (the text carries no fraction). */
  time: Schema.DateFromSelf
}) {
  /** The exact bytes signed. */
  get message(): string {
    return `deploy-tools signed configuration\nname: ${this.name}\nhash: ${this.hash}\ntime: ${rfc3339Seconds(this.time)}\n`
  }
}

/** Today's second, as the text carries it. */
export const signingTime = (now: Date = new Date()): Date => new Date(Math.floor(now.getTime() / 1000) * 1000)

/** The state a `-time` flag value (RFC 3339 seconds, UTC) names, or why not. */
export const signedState = (name: string, hash: string, time: string): SignedState | string => {
  const problem = configurationNameProblem(name) ?? sha256Problem(hash)
  if (problem !== undefined) return problem
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(time) || Number.isNaN(Date.parse(time))) return `time "${time}" is not YYYY-MM-DDTHH:MM:SSZ`
  const t = new Date(time)
  if (rfc3339Seconds(t) !== time) return `time "${time}" is not a valid date`
  return new SignedState({ name, hash, time: t })
}

/** An SSHSIG given armored or as its base64 body alone (one shell word): the armored text. */
export const armoredSignature = (text: string): string =>
  text.includes("-----BEGIN") ? text : `-----BEGIN SSH SIGNATURE-----\n${text.replace(/\s+/g, "")}\n-----END SSH SIGNATURE-----\n`

/** The base64 body of an armored SSHSIG: one word on a command line. */
export const signatureBody = (armored: string): string =>
  armored.replace(/-----(BEGIN|END) SSH SIGNATURE-----/g, "").replace(/\s+/g, "")

/** The state a printed message (SignedState.message) names, or why the text is not one. */
export const parseSignedMessage = (text: string): SignedState | string => {
  const m = /^deploy-tools signed configuration\nname: (.*)\nhash: (.*)\ntime: (.*)\n$/.exec(text)
  if (!m) return "not a deploy-tools signing message (deployctl sign -print-message prints one)"
  const s = signedState(m[1]!, m[2]!, m[3]!)
  return typeof s === "string" || s.message === text ? s : "not a canonical signing message"
}
