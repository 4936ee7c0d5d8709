// The rollouts table as Rollouts.ts reads and writes it (migrations 4 and 5): the row codec and the
// reads of live rollouts. The stored row is the truth: replicas on one database each keep a copy of
// the live rollouts for serving, reloaded from here (docs/scale-out.md), and every step is computed
// from the row read, locked, in the transaction that writes the step.
import type { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import type { Sha256 } from "../domain/Names.js"
import { Principal } from "../domain/Principal.js"
import { RolloutState } from "../domain/Rollout.js"
import { forUpdate } from "./SqlDialect.js"
import { insertState, type LayerInfo, type StateInfo } from "./Storage.js"

/** A rollout that serves something: running, paused or halted (reverted, aborted, completed are over). */
export const isLive = (s: RolloutState) => s.phase === "running" || s.phase === "paused" || s.phase === "halted"

export interface Live {
  readonly id: number
  readonly state: RolloutState
  /** The target: a stored state, not current until the rollout completes. */
  readonly target: StateInfo
}

export interface Row {
  readonly id: number
  readonly configuration: string
  readonly active: number
  readonly state: string
  readonly target_hash: string
  readonly target_layers: string
  readonly target_state_id: number
  readonly started: string
  readonly who_user: string
  readonly who_fingerprint: string
  readonly who_comment: string
}

export const encodeState = (s: RolloutState) => JSON.stringify(Schema.encodeSync(RolloutState)(s))
export const decodeState = (s: string) => Schema.decodeUnknownSync(RolloutState)(JSON.parse(s))

export const layersJson = (ls: ReadonlyArray<LayerInfo>) =>
  JSON.stringify(ls.map((l) => ({ component: l.component, version: l.version, hash: l.hash, ctime: l.ctime.toISOString() })))
const layersOf = (s: string): ReadonlyArray<LayerInfo> =>
  (JSON.parse(s) as Array<{ component: string; version: string; hash: string; ctime: string }>).map((l) => ({
    component: l.component, version: l.version, hash: l.hash as Sha256, ctime: new Date(l.ctime)
  }))

const whoOf = (r: Row) => new Principal({ user: r.who_user, fingerprint: r.who_fingerprint, comment: r.who_comment }, true)

export const liveOf = (r: Row): Live => ({
  id: r.id,
  state: decodeState(r.state),
  target: { id: r.target_state_id, configuration: r.configuration, hash: r.target_hash as Sha256, time: new Date(r.started), who: whoOf(r), layers: layersOf(r.target_layers) }
})

/** Inserts the target as a stored state of the configuration (not current); its id. */
export const insertTarget = (sql: SqlClient.SqlClient, name: string, target: Omit<StateInfo, "id">) =>
  Effect.gen(function* () {
    const [conf] = yield* sql<{ id: number }>`SELECT id FROM configurations WHERE name = ${name}`
    if (conf === undefined) return 0
    return yield* insertState(sql, conf.id, target)
  })

/**
 * Every live rollout, by configuration. A rollout started before migration 5 gets its target stored
 * now, so that it can be signed and is served with its signatures.
 */
export const loadLive = (sql: SqlClient.SqlClient) =>
  Effect.gen(function* () {
    const out = new Map<string, Live>()
    for (const r of yield* sql<Row>`SELECT * FROM rollouts WHERE active = 1`) {
      let row = r
      if (r.target_state_id === 0) {
        const l = liveOf(r)
        const id = yield* sql.withTransaction(Effect.tap(insertTarget(sql, r.configuration, l.target), (id) =>
          sql`UPDATE rollouts SET target_state_id = ${id}, phase = ${l.state.phase} WHERE id = ${r.id} AND target_state_id = 0`))
        row = { ...r, target_state_id: id }
      }
      out.set(r.configuration, liveOf(row))
    }
    return out
  })

/** The live rollout of `name` as stored; `lock`: locked until the transaction ends (call inside one). */
export const liveRow = (sql: SqlClient.SqlClient, name: string, lock = false) =>
  Effect.map(
    sql<Row>`SELECT * FROM rollouts WHERE configuration = ${name} AND active = 1 ${lock ? forUpdate(sql) : sql.literal("")}`,
    ([r]) => (r === undefined ? undefined : liveOf(r))
  )
