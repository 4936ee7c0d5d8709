// deploy-agent -trust FILE (OpenSSH allowed_signers) and -trust-min N: a new state is deployed only
// when at least N distinct trusted keys signed it (SSHSIG over SignedState's text, namespace
// deploy-tools), and it was not signed before the state the agent runs (an old signed state replayed
// by whoever controls the registry is a downgrade). Signers are checked against the file now: a key
// whose valid-before has passed (revoked, rotated out) no longer counts, even for old signatures.
// A refusal is a cycle outcome, not a failure: the agent keeps what it runs and says why.
// The signing time of the running state is kept beside the state file (`<state>.signed`).
import { Effect } from "effect"
import * as fsSync from "node:fs"
import { promises as fs } from "node:fs"
import type { RefusalReason } from "../domain/DeployOutcome.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import { type RegistryError, StateFileError } from "../domain/AgentErrors.js"
import { SignedState } from "../domain/SignedState.js"
import { writeFileAtomic } from "../fs/Atomic.js"
import { type AllowedSigner, findSigner, parseAllowedSigners } from "../ssh/AllowedSigners.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { NAMESPACE, verify } from "../ssh/SshSig.js"

export type { RefusalReason }

export interface TrustSettings {
  readonly file: string
  readonly signers: ReadonlyArray<AllowedSigner>
  /** Distinct trusted keys a state needs (-trust-min, default 1). */
  readonly min: number
}

/** What `/signatures/<name>.json` lists. */
export interface ServedSignature {
  readonly Time: string
  readonly Signature: string
}

export type Judgement =
  | { readonly _tag: "Trusted"; readonly signedAt: Date; readonly signers: ReadonlyArray<string> }
  | { readonly _tag: "Refused"; readonly reason: RefusalReason; readonly detail: string }

/** Reads and checks the -trust file at start; any line we cannot honour is a startup error. */
export const loadTrust = (file: string, min: string | undefined): TrustSettings | string => {
  const n = min === undefined ? 1 : /^[1-9][0-9]{0,3}$/.test(min) ? Number(min) : undefined
  if (n === undefined) return `-trust-min: "${min}" is not a positive number of signers`
  let text: string
  try {
    text = fsSync.readFileSync(file, "utf8")
  } catch (e) {
    return `-trust: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`
  }
  const { signers, problems } = parseAllowedSigners(text)
  if (problems.length > 0) return `-trust: ${file}:${problems[0]!.line}: ${problems[0]!.message}`
  if (signers.length === 0) return `-trust: ${file} lists no signers`
  const keys = new Set(signers.map((s) => s.fingerprint)).size
  if (keys < n) return `-trust-min ${n}: ${file} lists only ${keys} distinct key(s)`
  return { file, signers, min: n }
}

/** Whether `doc` may be deployed over a state signed at `runningSignedAt`. */
export const judge = (
  trust: TrustSettings,
  doc: Pick<ConfigurationDocument, "Name" | "Hash">,
  served: ReadonlyArray<ServedSignature>,
  runningSignedAt: Date | undefined,
  now: Date
): Judgement => {
  if (served.length === 0) return { _tag: "Refused", reason: "unsigned", detail: `state ${doc.Hash} has no signature` }
  const trusted = new Map<string, { name: string; at: Date }>()
  let bad = ""
  let untrusted = ""
  for (const s of served) {
    const at = new Date(s.Time)
    if (Number.isNaN(at.getTime())) {
      bad ||= `signature time ${JSON.stringify(s.Time)} is not a time`
      continue
    }
    const v = verify(s.Signature, Buffer.from(new SignedState({ name: doc.Name, hash: doc.Hash, time: at }).message))
    if (v._tag === "Invalid") {
      bad ||= v.reason
      continue
    }
    const signer = findSigner(trust.signers, v.publicKey, NAMESPACE, now)
    if ("untrusted" in signer) {
      untrusted ||= signer.reason
      continue
    }
    const fp = fingerprint(v.publicKey)
    const seen = trusted.get(fp)
    if (seen === undefined || seen.at < at) trusted.set(fp, { name: signer.principals[0]!, at })
  }
  if (trusted.size < trust.min) {
    const have = `${trusted.size} of the ${trust.min} trusted signature(s) needed`
    if (bad !== "") return { _tag: "Refused", reason: "bad signature", detail: `${bad} (${have})` }
    return { _tag: "Refused", reason: untrusted !== "" ? "untrusted signer" : "unsigned", detail: `${untrusted || "no usable signature"} (${have})` }
  }
  // The newest trusted signature dates the state: nobody can forge a newer one.
  const signedAt = new Date(Math.max(...[...trusted.values()].map((t) => t.at.getTime())))
  if (runningSignedAt !== undefined && signedAt < runningSignedAt) {
    return {
      _tag: "Refused",
      reason: "older than current",
      detail: `state ${doc.Hash} was signed at ${signedAt.toISOString()}, before the running state (${runningSignedAt.toISOString()})`
    }
  }
  return { _tag: "Trusted", signedAt, signers: [...trusted.values()].map((t) => t.name) }
}

const signedFile = (stateFile: string) => `${stateFile}.signed`

/** When the running state was signed (undefined: not deployed under -trust yet). */
export const runningSignedAt = (stateFile: string): Effect.Effect<Date | undefined, StateFileError> =>
  Effect.tryPromise({
    try: () => fs.readFile(signedFile(stateFile), "utf8").then((t) => t.trim(), (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e))),
    catch: (e) => new StateFileError({ message: `cannot read ${signedFile(stateFile)}: ${(e as Error).message}` })
  }).pipe(Effect.flatMap((t) => {
    if (t === undefined) return Effect.succeed(undefined)
    const d = new Date(t)
    // A damaged record must not open the door to downgrades: the agent stops until someone looks.
    return Number.isNaN(d.getTime()) ? Effect.fail(new StateFileError({ message: `${signedFile(stateFile)} does not hold a time` })) : Effect.succeed(d)
  }))

export const recordSignedAt = (stateFile: string, at: Date): Effect.Effect<void, StateFileError> =>
  Effect.tryPromise({
    try: () => writeFileAtomic(signedFile(stateFile), `${at.toISOString()}\n`, { mode: 0o644 }),
    catch: (e) => new StateFileError({ message: `cannot write ${signedFile(stateFile)}: ${(e as Error).message}` })
  }).pipe(Effect.asVoid)

/**
 * The cycle's hook: with -trust, judges a changed document from the signatures the session serves,
 * against when the running state was signed. Without -trust: undefined (nothing changes).
 */
export const checkTrust = (
  trust: TrustSettings | undefined,
  stateFile: string,
  doc: Pick<ConfigurationDocument, "Name" | "Hash">,
  served: Effect.Effect<ReadonlyArray<ServedSignature>, RegistryError>
): Effect.Effect<Judgement | undefined, RegistryError | StateFileError> =>
  trust === undefined
    ? Effect.succeed(undefined)
    : Effect.gen(function* () {
      const running = yield* runningSignedAt(stateFile)
      return judge(trust, doc, yield* served, running, new Date())
    })
