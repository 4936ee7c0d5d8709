// Public-key authentication: user `deploy-agent` against the service keys, everyone else against the
// operator keys, with sshd's semantics for authorized_keys options (KeyOptions.ts) and OpenSSH user
// certificates on `cert-authority` lines. A key is accepted only after its signature verifies (SSH2.md
// pitfall 2); an attempt without a signature is the protocol's "would you accept this key?" query and
// grants nothing, but gets the same checks, so a client learns early that a key will not do.
import { Context, Effect, Layer } from "effect"
import * as crypto from "node:crypto"
import { promises as fs } from "node:fs"
import type { ParsedKey } from "ssh2"
import type { ConfigScope } from "../domain/ConfigScope.js"
import { quote } from "../domain/LogText.js"
import { Principal } from "../domain/Principal.js"
import { StartupError } from "../domain/StartupError.js"
import { normaliseAddress, sourceAddressAllows } from "../ssh/AddressMatch.js"
import { type AuthorizedKey, parseAuthorizedKeys } from "../ssh/AuthorizedKeys.js"
import { certifiedKeyType, certSignatureAlgorithm, parseCertificate } from "../ssh/Certificate.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { keyHashAlgorithm } from "../ssh/Ssh2Internals.js"
import { verifySignature } from "../ssh/SshSignature.js"

export const AGENT_USER = "deploy-agent"

export type Role = "operator" | "agent"

export interface AuthAttempt {
  readonly user: string
  /** The key algorithm as ssh2 reports it (ssh-rsa with hashAlgo for rsa-sha2-*; certificate algorithms as sent). */
  readonly algo: string
  readonly keyData: Buffer
  /** The client's address (for from= and source-address); without it such keys refuse. */
  readonly address?: string
  /** The hash ssh2 derived from the algorithm: sha256/sha512 for rsa-sha2-*, undefined otherwise. */
  readonly hashAlgo?: string | undefined
  /** Present on the real login; absent on the query phase. */
  readonly signed?: { readonly blob: Buffer; readonly signature: Buffer; readonly hashAlgo?: string | undefined }
}

/** What a login may do, from the key's options and its certificate. */
export interface SessionLimits {
  /** A forced command (`command=` or the certificate's `force-command`). */
  readonly command?: string
  readonly pty: boolean
  /** `configurations=` of the key's line (or the CA's line): what an agent login may read. */
  readonly configurations?: ConfigScope
}

/** Why a login was refused, as a bounded metric label (docs/metrics.md): never the key or the user. */
export type RejectKind = "weak_algorithm" | "not_listed" | "bad_signature" | "key_options" | "certificate"

export type AuthDecision =
  /** `reason` is for the registry's log (untrusted parts quoted). */
  | { readonly _tag: "Reject"; readonly reason: string; readonly kind: RejectKind; readonly certifiedKey?: string }
  /** The key is listed: answer the query phase with PK_OK; the client must still prove possession. */
  | { readonly _tag: "KeyListed" }
  | { readonly _tag: "Accept"; readonly role: Role; readonly principal: Principal; readonly limits: SessionLimits }

export class Auth extends Context.Tag("registry/Auth")<
  Auth,
  {
    readonly check: (attempt: AuthAttempt) => Effect.Effect<AuthDecision>
    /** The same decision, synchronously: ssh2's authentication callback needs no fiber for it. */
    readonly decide: (attempt: AuthAttempt) => AuthDecision
  }
>() {
  /** An Auth over keys already parsed (tests, and the live layer below). */
  static readonly fromKeys = (operatorKeys: ReadonlyArray<AuthorizedKey>, serviceKeys: ReadonlyArray<AuthorizedKey>) =>
    Layer.succeed(Auth, makeAuth(operatorKeys, serviceKeys))
}

type Verify = (blob: Buffer, signature: Buffer, hashAlgo: string | undefined) => boolean

/**
 * A signature check over a KeyObject made once: ssh2's ParsedKey.verify hands node:crypto the PEM text,
 * which is parsed again on every login. Same semantics: ssh2's signature (already converted to the form
 * node:crypto takes) and, without an explicit hash, the key type's own (ssh2 keeps it under a private
 * symbol, read by Ssh2Internals.keyHashAlgorithm; ed25519 has none). Falls back to ssh2's verify for a key
 * node:crypto cannot load.
 */
const makeVerify = (key: ParsedKey): Verify => {
  const slow: Verify = (blob, signature, hashAlgo) => {
    try {
      return key.verify(blob, signature, hashAlgo) === true
    } catch {
      return false
    }
  }
  const own = keyHashAlgorithm(key)
  try {
    const pub = crypto.createPublicKey(key.getPublicPEM())
    return (blob, signature, hashAlgo) => {
      try {
        return crypto.verify(hashAlgo || own, blob, pub, signature) === true
      } catch {
        return false
      }
    }
  } catch {
    return slow
  }
}

interface Entry {
  readonly key: AuthorizedKey
  /** `file:line` for log lines. */
  readonly where: string
  readonly verify: Verify
}

const reject = (reason: string, kind: RejectKind) => ({ _tag: "Reject", reason, kind }) as const

/** The per-line options every login through `e` must pass (from=, expiry-time=). */
const lineProblem = (e: Entry, address: string | undefined, now: Date): string | undefined => {
  const r = e.key.restrictions
  if (r.from !== undefined && (address === undefined || !r.from(address))) {
    return `from= of ${e.where} does not allow ${quote(normaliseAddress(address ?? "?"))}`
  }
  if (r.expiresAt !== undefined && now >= r.expiresAt) return `key expired at ${r.expiresAt.toISOString()} (expiry-time= of ${e.where})`
  return undefined
}

const scopeOf = (e: Entry) => (e.key.restrictions.configurations !== undefined ? { configurations: e.key.restrictions.configurations } : {})

/** Strings by construction (ssh2 hands the user name over as a string): no schema validation per login. */
const principal = (user: string, fingerprint: string, comment: string) => new Principal({ user, fingerprint, comment }, true)

const CERT_OPTIONS = new Set(["force-command", "source-address"])

export const makeAuth = (
  operatorKeys: ReadonlyArray<AuthorizedKey>,
  serviceKeys: ReadonlyArray<AuthorizedKey>,
  sources: { readonly operator: string; readonly agent: string } = { operator: "-opauth", agent: "-srvauth" },
  clock: () => Date = () => new Date()
) => {
  const prepare = (keys: ReadonlyArray<AuthorizedKey>, file: string): ReadonlyArray<Entry> =>
    keys.map((key) => ({ key, where: `${file}:${key.line}`, verify: makeVerify(key.key) }))
  const operators = prepare(operatorKeys, sources.operator)
  const services = prepare(serviceKeys, sources.agent)

  const plainKey = (a: AuthAttempt, role: Role, entries: ReadonlyArray<Entry>): AuthDecision => {
    const hashAlgo = a.signed?.hashAlgo ?? a.hashAlgo
    if (a.algo === "ssh-rsa" && hashAlgo === undefined) return reject("ssh-rsa (SHA-1) signatures are refused; use rsa-sha2-256/512", "weak_algorithm")
    if (a.algo === "ssh-dss") return reject("DSA keys are refused", "weak_algorithm")
    const listed = entries.filter((e) => e.key.data.equals(a.keyData) && (e.key.type === a.algo || (e.key.type === "ssh-rsa" && /^rsa-sha2-(256|512)$/.test(a.algo))))
    if (listed.length === 0) return reject("key not listed", "not_listed")
    const usable = listed.filter((e) => !e.key.restrictions.certAuthority)
    if (usable.length === 0) return reject(`key is a CA (cert-authority at ${listed[0]!.where}); it signs certificates and never logs in itself`, "not_listed")
    // As sshd: the first line whose options allow this login.
    const now = clock()
    let problem = ""
    for (const e of usable) {
      const p = lineProblem(e, a.address, now)
      if (p !== undefined) {
        problem ||= p
        continue
      }
      if (a.signed === undefined) return { _tag: "KeyListed" }
      if (!e.verify(a.signed.blob, a.signed.signature, a.signed.hashAlgo)) return reject("bad signature", "bad_signature")
      const limits: SessionLimits = { pty: e.key.restrictions.pty, ...(e.key.restrictions.command !== undefined ? { command: e.key.restrictions.command } : {}), ...scopeOf(e) }
      return { _tag: "Accept", role, principal: principal(a.user, e.key.fingerprint, e.key.comment), limits }
    }
    return reject(problem, "key_options")
  }

  const certificate = (a: AuthAttempt, role: Role, entries: ReadonlyArray<Entry>): AuthDecision => {
    const sigAlgo = certSignatureAlgorithm(a.algo)
    if (sigAlgo === "ssh-rsa") return reject("ssh-rsa-cert-v01@openssh.com (SHA-1) signatures are refused; use rsa-sha2-256/512", "weak_algorithm")
    const parsed = parseCertificate(a.keyData)
    if (parsed === undefined || certifiedKeyType(parsed.type) !== certifiedKeyType(a.algo)) return reject("malformed certificate", "certificate")
    const cert = parsed
    // Refusals name the certified key (what ssh-keygen -l shows for the user's key), not the certificate blob.
    const refuse = (reason: string, kind: RejectKind = "certificate") => ({ _tag: "Reject", reason, kind, certifiedKey: cert.keyFingerprint }) as const
    const id = `certificate ${quote(cert.keyId)} serial ${cert.serial}`
    const caFp = fingerprint(cert.signatureKey)
    if (cert.certType !== 1) return refuse(`${id} is not a user certificate`)
    const cas = entries.filter((e) => e.key.restrictions.certAuthority && e.key.data.equals(cert.signatureKey))
    if (cas.length === 0) return refuse(`${id}: unknown CA ${caFp}`)
    if (!cert.signedByCa) return refuse(`${id}: bad CA signature`, "bad_signature")
    const now = BigInt(Math.floor(clock().getTime() / 1000))
    if (now < cert.validAfter) return refuse(`${id} is not yet valid (valid after ${new Date(Number(cert.validAfter) * 1000).toISOString()})`)
    if (now >= cert.validBefore) return refuse(`${id} expired at ${cert.validBefore >= 2n ** 53n ? "forever" : new Date(Number(cert.validBefore) * 1000).toISOString()}`)
    for (const name of cert.criticalOptions.keys()) {
      if (!CERT_OPTIONS.has(name)) return refuse(`${id} has unsupported critical option ${quote(name)}`)
    }
    const src = cert.criticalOptions.get("source-address")
    if (src !== undefined && (a.address === undefined || !sourceAddressAllows(src, a.address))) {
      return refuse(`${id}: source-address ${quote(src)} does not allow ${quote(normaliseAddress(a.address ?? "?"))}`)
    }
    if (cert.principals.length === 0) return refuse(`${id} has no principals`)
    const nowDate = clock()
    let problem = ""
    for (const ca of cas) {
      const allowed = ca.key.restrictions.principals
      const ok = allowed !== undefined ? cert.principals.some((p) => allowed.includes(p)) : cert.principals.includes(a.user)
      if (!ok) {
        problem ||= allowed !== undefined
          ? `${id}: none of its principals ${quote(cert.principals.join(","))} is in principals= of ${ca.where}`
          : `${id}: user ${quote(a.user)} is not among its principals ${quote(cert.principals.join(","))}`
        continue
      }
      const p = lineProblem(ca, a.address, nowDate)
      if (p !== undefined) {
        problem ||= p
        continue
      }
      const forced = cert.criticalOptions.get("force-command")
      const lineCommand = ca.key.restrictions.command
      if (forced !== undefined && lineCommand !== undefined && forced !== lineCommand) {
        problem ||= `${id}: force-command conflicts with command= of ${ca.where}`
        continue
      }
      if (a.signed === undefined) return { _tag: "KeyListed" }
      if (!verifySignature(cert.publicKey, a.signed.blob, a.signed.signature, sigAlgo)) return refuse(`${id}: bad signature`, "bad_signature")
      const command = forced ?? lineCommand
      const limits: SessionLimits = { pty: ca.key.restrictions.pty && cert.extensions.has("permit-pty"), ...(command !== undefined ? { command } : {}), ...scopeOf(ca) }
      const comment = `cert ${quote(cert.keyId)} serial ${cert.serial} CA ${caFp}${ca.key.comment ? ` ${ca.key.comment}` : ""}`
      return { _tag: "Accept", role, principal: principal(a.user, cert.keyFingerprint, comment), limits }
    }
    return refuse(problem)
  }

  const decide = (a: AuthAttempt): AuthDecision => {
    const role: Role = a.user === AGENT_USER ? "agent" : "operator"
    const entries = role === "agent" ? services : operators
    return certSignatureAlgorithm(a.algo) !== undefined ? certificate(a, role, entries) : plainKey(a, role, entries)
  }
  return { check: (a: AuthAttempt): Effect.Effect<AuthDecision> => Effect.sync(() => decide(a)), decide }
}

export interface KeysFile {
  readonly path: string
  readonly keys: ReadonlyArray<AuthorizedKey>
  /** One line per line that did not parse (logged as warnings). */
  readonly warnings: ReadonlyArray<string>
}

/**
 * Reads an authorized_keys file; no usable key is a startup error naming the file, and so is a line with
 * an option we cannot honour (file, line and option), since ignoring it would drop the restriction.
 */
export const loadKeysFile = (file: string, flag: string): Effect.Effect<KeysFile, StartupError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (e) => new StartupError({ message: `cannot read ${flag} keys file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` })
  }).pipe(
    Effect.flatMap((text) => {
      const { keys, problems } = parseAuthorizedKeys(text)
      const fatal = problems.find((p) => p.fatal)
      if (fatal !== undefined) {
        return Effect.fail(new StartupError({ message: `${flag} keys file ${file}:${fatal.line}: ${fatal.message}; refusing to start` }))
      }
      const warnings = problems.map((p) => `${file}:${p.line}: ${p.message}, line ignored`)
      return keys.length === 0
        ? Effect.fail(new StartupError({ message: `${flag} keys file ${file} has no keys; refusing to start` }))
        : Effect.succeed({ path: file, keys, warnings })
    })
  )

/** Loads both files (each needs at least one key) and logs the lines it ignored. */
export const AuthLive = (files: { readonly operatorKeys: string; readonly serviceKeys: string }): Layer.Layer<Auth, StartupError> =>
  Layer.effect(
    Auth,
    Effect.gen(function* () {
      const op = yield* loadKeysFile(files.operatorKeys, "-opauth")
      const srv = yield* loadKeysFile(files.serviceKeys, "-srvauth")
      // An operator can change everything anyway: a scope there would promise what nothing enforces.
      const scoped = op.keys.find((k) => k.restrictions.configurations !== undefined)
      if (scoped !== undefined) {
        return yield* new StartupError({ message: `-opauth keys file ${files.operatorKeys}:${scoped.line}: option configurations is only for agent keys (-srvauth); refusing to start` })
      }
      for (const w of [...op.warnings, ...srv.warnings]) yield* Effect.logWarning(w)
      return makeAuth(op.keys, srv.keys, { operator: files.operatorKeys, agent: files.serviceKeys })
    })
  )
