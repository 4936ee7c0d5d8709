// Operators' signatures of configuration states (SSHSIG over SignedState's text). `addsig` attaches one
// to a state the configuration serves: the current one, or the pending target of its live rollout
// (docs/rollouts.md), after checking it: it verifies (any key: whom to trust is each agent's decision, by
// its -trust file), it names that state's hash, and it was made after the state was (minus CLOCK_SKEW):
// an old signature cannot be replayed onto a rollback, which is signed anew. Agents read the signatures
// of the state they are served beside its document (`/signatures/<name>.json`); `history` shows them.
// A signature attached is told to the watchers (ChangeFeed `Signed`), so that an agent that refused the
// state as unsigned looks again.
import { SqlClient } from "@effect/sql"
import { Clock, Context, Effect, Layer, Option } from "effect"
import { ConfigurationNotFound, SignatureRejected, type StorageError } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import type { Principal } from "../domain/Principal.js"
import type { SignedState } from "../domain/SignedState.js"
import { rfc3339Seconds } from "../domain/Time.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { verify } from "../ssh/SshSig.js"
import { ChangeFeed } from "./ChangeFeed.js"
import { orStorage } from "./StorageRows.js"

/** Signatures kept per state (one per key): what `/signatures/<name>.json` can grow to is bounded. */
export const MAX_SIGNATURES_PER_STATE = 32

/** How far an operator's clock may be behind the registry's when signing a state just made. */
export const CLOCK_SKEW_MS = 5 * 60_000

export interface StateSignature {
  /** The signing key's `SHA256:…`. */
  readonly fingerprint: string
  /** The time in the signed text. */
  readonly signedAt: Date
  /** The armored SSHSIG text. */
  readonly signature: string
}

/** What agents read at `/signatures/<name>.json`: the served state's hash and its signatures. */
export interface SignaturesDocument {
  readonly Name: string
  readonly Hash: string
  readonly Signatures: ReadonlyArray<{ readonly Time: string; readonly Signature: string }>
}

export class Signatures extends Context.Tag("registry/Signatures")<
  Signatures,
  {
    readonly attach: (state: SignedState, signature: string, who: Principal) => Effect.Effect<StateSignature, ConfigurationNotFound | SignatureRejected | StorageError>
    /** Signatures per state id, for the ids given. */
    readonly ofStates: (ids: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, ReadonlyArray<StateSignature>>, StorageError>
    /** The current state's hash and signatures, or None-like undefined when there is no such configuration. */
    readonly current: (name: string) => Effect.Effect<SignaturesDocument | undefined, StorageError>
    /**
     * The signatures of the state with `hash` that the configuration serves (current, or its live
     * rollout's target); none listed for a hash it does not serve. Undefined: no such configuration.
     */
    readonly served: (name: string, hash: string) => Effect.Effect<SignaturesDocument | undefined, StorageError>
  }
>() {}

interface Row {
  readonly state_id: number
  readonly fingerprint: string
  readonly signed_at: string
  readonly signature: string
}

const toSignature = (r: Row): StateSignature => ({ fingerprint: r.fingerprint, signedAt: new Date(r.signed_at), signature: r.signature })

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const feed = yield* Effect.serviceOption(ChangeFeed)
  const currentState = (name: string) =>
    sql<{ id: number; hash: string; time: string }>`SELECT s.id, s.hash, s.time FROM configurations c JOIN states s ON s.id = c.state_id WHERE c.name = ${name}`
  /** The state with `hash` the configuration serves: its current state, or the target of its live rollout. */
  const servedState = (name: string, hash: string) =>
    sql<{ id: number; hash: string; time: string }>`SELECT s.id, s.hash, s.time FROM configurations c JOIN states s ON s.configuration_id = c.id
      WHERE c.name = ${name} AND s.hash = ${hash}
        AND (s.id = c.state_id OR s.id IN (SELECT r.target_state_id FROM rollouts r WHERE r.configuration = ${name} AND r.active = 1))
      ORDER BY s.id DESC LIMIT 1`
  const ofStates = (ids: ReadonlyArray<number>) =>
    orStorage(
      Effect.map(
        ids.length === 0 ? Effect.succeed([] as ReadonlyArray<Row>) : sql<Row>`SELECT state_id, fingerprint, signed_at, signature FROM signatures WHERE ${sql.in("state_id", ids)} ORDER BY signed_at, fingerprint`,
        (rows) => {
          const out = new Map<number, Array<StateSignature>>()
          for (const r of rows) out.set(r.state_id, [...(out.get(r.state_id) ?? []), toSignature(r)])
          return out as ReadonlyMap<number, ReadonlyArray<StateSignature>>
        }
      )
    )
  const document = (name: string, hash: string, stateId: number | undefined) =>
    Effect.map(stateId === undefined ? Effect.succeed(new Map<number, ReadonlyArray<StateSignature>>()) : ofStates([stateId]), (m): SignaturesDocument => ({
      Name: name,
      Hash: hash,
      Signatures: (stateId === undefined ? [] : m.get(stateId) ?? []).map((s) => ({ Time: rfc3339Seconds(s.signedAt), Signature: s.signature }))
    }))
  return Signatures.of({
    attach: (state, signature, who) =>
      orStorage(sql.withTransaction(Effect.gen(function* () {
        const v = verify(signature, Buffer.from(state.message))
        if (v._tag === "Invalid") return yield* new SignatureRejected({ message: `signature does not verify: ${v.reason}` })
        const [current] = yield* currentState(state.name)
        if (current === undefined) return yield* new ConfigurationNotFound({ name: state.name })
        const [cur] = yield* servedState(state.name, state.hash)
        if (cur === undefined) return yield* new SignatureRejected({ message: `configuration "${state.name}" has hash ${current.hash}, not the signed ${state.hash}, and no rollout to it in progress; nothing attached` })
        const now = yield* Clock.currentTimeMillis
        if (state.time.getTime() > now + CLOCK_SKEW_MS) {
          return yield* new SignatureRejected({ message: `signature time ${rfc3339Seconds(state.time)} is in the future` })
        }
        const made = new Date(cur.time)
        if (state.time.getTime() < made.getTime() - CLOCK_SKEW_MS) {
          return yield* new SignatureRejected({ message: `signature time ${rfc3339Seconds(state.time)} is before the state was made (${rfc3339Seconds(made)}); sign it anew` })
        }
        const [{ n }] = yield* sql<{ n: number }>`SELECT CAST(COUNT(*) AS INTEGER) AS n FROM signatures WHERE state_id = ${cur.id} AND fingerprint != ${fingerprint(v.publicKey)}`
        if (n >= MAX_SIGNATURES_PER_STATE) return yield* new SignatureRejected({ message: `state already has ${n} signatures, the most kept` })
        const row = { state_id: cur.id, fingerprint: fingerprint(v.publicKey), signed_at: state.time.toISOString(), signature, added_at: new Date(now).toISOString(), added_by_fingerprint: who.fingerprint }
        yield* sql`INSERT INTO signatures ${sql.insert(row)}
          ON CONFLICT (state_id, fingerprint) DO UPDATE SET signed_at = excluded.signed_at, signature = excluded.signature,
            added_at = excluded.added_at, added_by_fingerprint = excluded.added_by_fingerprint`
        return toSignature(row)
      })).pipe(
        // After the commit: watchers served this hash hear of it (an agent that refused it looks again).
        Effect.tap(() => Option.match(feed, { onNone: () => Effect.void, onSome: (f) => f.publish({ _tag: "Signed", name: state.name, hash: state.hash as Sha256 }) }))
      )),
    ofStates,
    current: (name) =>
      orStorage(Effect.gen(function* () {
        const [cur] = yield* currentState(name)
        if (cur === undefined) return undefined
        return yield* document(name, cur.hash, cur.id)
      })),
    served: (name, hash) =>
      orStorage(Effect.gen(function* () {
        const [cur] = yield* currentState(name)
        if (cur === undefined) return undefined
        const [st] = yield* servedState(name, hash)
        return yield* document(name, hash, st?.id)
      }))
  })
})

/** Requires SqlClient with the schema migrated (StorageLive migrates at start). */
export const SignaturesLive = Layer.effect(Signatures, make)

/** No signatures and none accepted (in-process servers over a fixed Storage). */
export const SignaturesNone = Layer.succeed(Signatures, {
  attach: (state) => Effect.fail(new ConfigurationNotFound({ name: state.name })),
  ofStates: () => Effect.succeed(new Map()),
  current: () => Effect.succeed(undefined),
  served: () => Effect.succeed(undefined)
})
