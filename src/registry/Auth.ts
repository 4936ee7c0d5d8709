// Public-key authentication: user `deploy-agent` against the service keys, everyone else against the
// operator keys. A key is accepted only after its signature verifies (SSH2.md pitfall 2); an attempt
// without a signature is the protocol's "would you accept this key?" query and grants nothing.
import { Context, Effect, Layer } from "effect"
import * as crypto from "node:crypto"
import { promises as fs } from "node:fs"
import type { ParsedKey } from "ssh2"
import { Principal } from "../domain/Principal.js"
import { StartupError } from "../domain/StartupError.js"
import { type AuthorizedKey, parseAuthorizedKeys } from "../ssh/AuthorizedKeys.js"

export const AGENT_USER = "deploy-agent"

export type Role = "operator" | "agent"

export interface AuthAttempt {
  readonly user: string
  /** The key algorithm the client names (for RSA: ssh-rsa, rsa-sha2-256 or rsa-sha2-512). */
  readonly algo: string
  readonly keyData: Buffer
  /** Present on the real login; absent on the query phase. */
  readonly signed?: { readonly blob: Buffer; readonly signature: Buffer; readonly hashAlgo?: string | undefined }
}

export type AuthDecision =
  | { readonly _tag: "Reject" }
  /** The key is listed: answer the query phase with PK_OK; the client must still prove possession. */
  | { readonly _tag: "KeyListed" }
  | { readonly _tag: "Accept"; readonly role: Role; readonly principal: Principal }

export class Auth extends Context.Tag("registry/Auth")<
  Auth,
  {
    readonly check: (attempt: AuthAttempt) => Effect.Effect<AuthDecision>
  }
>() {
  /** An Auth over keys already parsed (tests, and the live layer below). */
  static readonly fromKeys = (operatorKeys: ReadonlyArray<AuthorizedKey>, serviceKeys: ReadonlyArray<AuthorizedKey>) =>
    Layer.succeed(Auth, makeAuth(operatorKeys, serviceKeys))
}

const RSA_ALGOS = new Set(["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"])

const algoMatches = (keyType: string, algo: string) => keyType === algo || (keyType === "ssh-rsa" && RSA_ALGOS.has(algo))

type Verify = (blob: Buffer, signature: Buffer, hashAlgo: string | undefined) => boolean

/**
 * A signature check over a KeyObject made once: ssh2's ParsedKey.verify hands node:crypto the PEM text,
 * which is parsed again on every login. Same semantics: ssh2's signature (already converted to the form
 * node:crypto takes) and, without an explicit hash, the key type's own (ssh2 keeps it under a private
 * symbol; ed25519 has none). Falls back to ssh2's verify if the key does not fit that mould.
 */
const makeVerify = (key: ParsedKey): Verify => {
  const slow: Verify = (blob, signature, hashAlgo) => {
    try {
      return key.verify(blob, signature, hashAlgo) === true
    } catch {
      return false
    }
  }
  try {
    const hashSym = Object.getOwnPropertySymbols(key).find((s) => s.description === "Hash Algorithm")
    if (hashSym === undefined) return slow
    const own = (key as unknown as Record<symbol, unknown>)[hashSym]
    if (own !== null && own !== undefined && typeof own !== "string") return slow
    const pub = crypto.createPublicKey(key.getPublicPEM())
    return (blob, signature, hashAlgo) => {
      try {
        return crypto.verify(hashAlgo || (own ?? null), blob, pub, signature) === true
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
  readonly verify: Verify
}

export const makeAuth = (operatorKeys: ReadonlyArray<AuthorizedKey>, serviceKeys: ReadonlyArray<AuthorizedKey>) => {
  const prepare = (keys: ReadonlyArray<AuthorizedKey>): ReadonlyArray<Entry> => keys.map((key) => ({ key, verify: makeVerify(key.key) }))
  const operators = prepare(operatorKeys)
  const services = prepare(serviceKeys)
  return {
    check: (a: AuthAttempt): Effect.Effect<AuthDecision> =>
      Effect.sync(() => {
        const role: Role = a.user === AGENT_USER ? "agent" : "operator"
        const keys = role === "agent" ? services : operators
        const found = keys.find((k) => algoMatches(k.key.type, a.algo) && k.key.data.equals(a.keyData))
        if (found === undefined) return { _tag: "Reject" } as const
        if (a.signed === undefined) return { _tag: "KeyListed" } as const
        const entry = found.key
        const valid = found.verify(a.signed.blob, a.signed.signature, a.signed.hashAlgo)
        if (!valid) return { _tag: "Reject" } as const
        return {
          _tag: "Accept",
          role,
          principal: new Principal({ user: a.user, fingerprint: entry.fingerprint, comment: entry.comment })
        } as const
      })
  }
}

export interface KeysFile {
  readonly path: string
  readonly keys: ReadonlyArray<AuthorizedKey>
  /** One line per line that did not parse (logged as warnings). */
  readonly warnings: ReadonlyArray<string>
}

/** Reads an authorized_keys file; no usable key is a startup error naming the file. */
export const loadKeysFile = (file: string, flag: string): Effect.Effect<KeysFile, StartupError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (e) => new StartupError({ message: `cannot read ${flag} keys file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` })
  }).pipe(
    Effect.flatMap((text) => {
      const { keys, problems } = parseAuthorizedKeys(text)
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
      for (const w of [...op.warnings, ...srv.warnings]) yield* Effect.logWarning(w)
      return makeAuth(op.keys, srv.keys)
    })
  )
