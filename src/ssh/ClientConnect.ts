// How an operator tool (deployctl, deploy-from-docker) reaches the registry, defined once:
// the address `host:port`, or several replicas' `a:2022,b:2022` tried in order (connectFirst); the host key pinned by `-fp SHA256:…`, else checked against
// ~/.ssh/known_hosts; `-key FILE`, else $DEPLOYCTL_KEY, else the ssh-agent at $SSH_AUTH_SOCK, else
// ~/.ssh/id_ed25519, id_ecdsa, id_rsa (ClientAuth.ts); a certificate beside the key (or -cert) is used.
import { Effect, Either, type Scope } from "effect"
import type { Client } from "ssh2"
import { UsageError } from "../domain/Errors.js"
import * as ClientAuth from "./ClientAuth.js"
import { connect, parseAddress } from "./Connection.js"
import { fingerprint, normalizeFingerprint } from "./Fingerprint.js"
import * as KnownHosts from "./KnownHosts.js"
import { SshError } from "./SshError.js"

export interface Address {
  readonly host: string
  readonly port: number
}

export interface Target extends Address {
  /** Every address of `-addr`, in order (host:port above is the first): replicas behind one name. */
  readonly addresses: ReadonlyArray<Address>
  /** The pinned host key fingerprint (`SHA256:…`, `sha256:` accepted); undefined or "": known_hosts decides. */
  readonly fingerprint: string | undefined
}

/** `-addr a:2022,b:2022`: one address or several, comma-separated; undefined when any is malformed. */
export const parseAddresses = (addr: string): ReadonlyArray<Address> | undefined => {
  const all = addr.split(",").map(parseAddress)
  return all.length > 0 && all.every((a) => a !== undefined) ? all : undefined
}

/**
 * Connects to the first address that answers, from `start` on and wrapping around. Only a connection
 * failure (refused, unreachable, timed out, closed during the handshake) moves on to the next address: a
 * host key or login refusal stops at once, since every replica presents one key (`-hostkey`) and trusts
 * the same keys, so that is a configuration to fix, not a replica to skip. One address fails with its
 * own error, unchanged; several with one error naming each address's failure. Resolves with the index
 * of the address that answered.
 */
export const connectFirst = <A, R>(
  addresses: ReadonlyArray<Address>,
  start: number,
  one: (a: Address) => Effect.Effect<A, SshError, R>
): Effect.Effect<readonly [A, number], SshError, R> =>
  Effect.gen(function* () {
    const failures: Array<SshError> = []
    for (let i = 0; i < addresses.length; i++) {
      const index = (start + i) % addresses.length
      const r = yield* Effect.either(one(addresses[index]!))
      if (Either.isRight(r)) return [r.right, index] as const
      if (r.left.reason !== "Connect") return yield* r.left
      failures.push(r.left)
    }
    if (failures.length === 1) return yield* failures[0]!
    return yield* new SshError({
      reason: "Connect",
      message: `no registry address answered: ${failures.map((f) => f.message).join("; ")}`,
      cause: failures.at(-1)?.cause
    })
  })

/**
 * Checks `-addr` and `-fp` (as given, or from $DEPLOYCTL_ADDR / $DEPLOYCTL_FINGERPRINT) before
 * anything slow happens; an empty fingerprint means none.
 */
export const parseTarget = (addr: string | undefined, fp: string | undefined): Either.Either<Target, UsageError> => {
  if (addr === undefined || addr === "") {
    return Either.left(new UsageError({ message: "no registry address: pass -addr host:port or set DEPLOYCTL_ADDR" }))
  }
  const all = parseAddresses(addr)
  if (all === undefined) {
    const want = addr.includes(",") ? "host:port or host:port,host:port,…" : "host:port"
    return Either.left(new UsageError({ message: `invalid registry address "${addr}": want ${want}` }))
  }
  const a = { ...all[0]!, addresses: all }
  if (fp === undefined || fp === "") return Either.right({ ...a, fingerprint: undefined })
  const pinned = normalizeFingerprint(fp)
  if (pinned === undefined) {
    return Either.left(
      new UsageError({ message: `invalid fingerprint "${fp}": want SHA256:<43 base64 characters> as deploy-registry logs it` })
    )
  }
  return Either.right({ ...a, fingerprint: pinned })
}

export interface HostKeyPolicy {
  readonly verifyHostKey: (blob: Buffer) => boolean
  readonly hostKeyRefused: (seen: string) => string
}

/** The pinned fingerprint exactly, else `<home>/.ssh/known_hosts` (read once, up front), for one address. */
export const hostKeyPolicy = (t: Address & { readonly fingerprint: string | undefined }, home?: string): Effect.Effect<HostKeyPolicy, SshError> =>
  Effect.gen(function* () {
    const where = `${t.host}:${t.port}`
    if (t.fingerprint !== undefined && t.fingerprint !== "") {
      // Normalized here too for callers that checked but kept the user's spelling (sha256:…).
      const want = normalizeFingerprint(t.fingerprint) ?? t.fingerprint
      return {
        verifyHostKey: (blob) => fingerprint(blob) === want,
        hostKeyRefused: (seen) => `host key mismatch for ${where}: the registry presented ${seen}, expected ${want}`
      }
    }
    const file = KnownHosts.defaultPath(home)
    const entries = yield* KnownHosts.load(file)
    let verdict: KnownHosts.Verdict = "unknown"
    return {
      verifyHostKey: (blob) => (verdict = KnownHosts.check(entries, t.host, t.port, blob)) === "trusted",
      hostKeyRefused: (seen) =>
        verdict === "revoked"
          ? `host key ${seen} of ${where} is marked @revoked in ${file}`
          : verdict === "mismatch"
            ? `host key mismatch for ${where}: the registry presented ${seen}, which ${file} does not list for ${KnownHosts.hostName(t.host, t.port)}`
            : `unknown host ${where} (key ${seen}): not in ${file}; pass -fp or set DEPLOYCTL_FINGERPRINT to the fingerprint deploy-registry logs`
    }
  })

/**
 * Credentials: `keyFile` when given, else the agent at `agentSocket` (and with `more`, the environment's
 * key before it and ~/.ssh's keys after it); checked before connecting, with the advice for a refusal.
 */
export const credentials = (keyFile: string | undefined, agentSocket: string | undefined, more: Omit<ClientAuth.KeyChoice, "keyFile" | "agentSocket"> = {}) =>
  Effect.map(ClientAuth.resolve({ keyFile, agentSocket, ...more }), (a) => ({ ...ClientAuth.connectFields(a), refused: ClientAuth.refusedAdvice(a) }))

export type Credentials = ReturnType<typeof ClientAuth.connectFields> & { readonly refused?: string }

/** Connects to an already checked target with resolved credentials (scoped); its addresses in order. */
export const connectTarget = (
  t: Target,
  auth: Credentials,
  opts: { readonly username: string; readonly home?: string | undefined }
): Effect.Effect<Client, SshError, Scope.Scope> =>
  Effect.map(
    connectFirst(t.addresses, 0, (a) =>
      Effect.flatMap(hostKeyPolicy({ ...a, fingerprint: t.fingerprint }, opts.home), (policy) =>
        connect({ host: a.host, port: a.port, username: opts.username, ...policy, ...auth })
      )
    ),
    ([client]) => client
  )

export interface OperatorOptions {
  readonly addr: string | undefined
  readonly fp: string | undefined
  readonly keyFile: string | undefined
  /** $DEPLOYCTL_KEY: the key when there is no -key. */
  readonly envKey?: string | undefined
  /** -cert FILE; else `<key>-cert.pub` when it exists. */
  readonly certFile?: string | undefined
  readonly agentSocket: string | undefined
  /** Where ~/.ssh/known_hosts is looked up. */
  readonly home?: string | undefined
  readonly username: string
}

/** The whole policy in one step: check the flags, resolve credentials, connect (scoped). */
export const connectOperator = (o: OperatorOptions): Effect.Effect<Client, UsageError | SshError, Scope.Scope> =>
  Effect.gen(function* () {
    const t = yield* parseTarget(o.addr, o.fp)
    const auth = yield* credentials(o.keyFile, o.agentSocket, {
      envKey: o.envKey,
      certFile: o.certFile,
      home: o.home,
      defaultKeys: true
    })
    return yield* connectTarget(t, auth, { username: o.username, home: o.home })
  })
