// Storage's changes. Each runs in one transaction; so does a read-check-write such as `-expect` (the check
// and the change see the same state).
import type { SqlClient } from "@effect/sql"
import { Clock, Effect, Option } from "effect"
import type { LayerRef } from "../domain/Commands.js"
import { configHash } from "../domain/ConfigHash.js"
import {
  ComponentInUse,
  ComponentNotFound,
  ConfigurationExists,
  ConfigurationNotFound,
  DuplicateComponent,
  LayerNotFound,
  RollbackUnavailable,
  RolloutInProgress,
  StaleExpect,
  VersionExists,
  VersionInUse,
  VersionNotFound
} from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../domain/Names.js"
import type { Principal } from "../domain/Principal.js"
import { forUpdate, isPostgres } from "./SqlDialect.js"
import type { Reads } from "./StorageReads.js"
import {
  type Change, chunks, duplicateComponent, insertState, type LayerInfo, orStorage, sameLayers, type StateInfo,
  type StateRow, toVersion, type VersionInfo, type VersionRow
} from "./StorageRows.js"

export const makeChanges = (sql: SqlClient.SqlClient, reads: Reads) => {
  const { currentState, findVersion, servedBy, statesFrom, stateColumns, usedBy } = reads
  // Every change runs in `transaction`: it moves the generation before it starts and after it ends (committed
  // or not), and counts itself as running in between (Storage.generation).
  let generation = 0
  let running = 0
  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        running++
        generation++
      }),
      () => orStorage(sql.withTransaction(effect)),
      () =>
        Effect.sync(() => {
          generation++
          running--
        })
    )
  // PostgreSQL: other replicas write the same tables, so nothing read here can be known to be current.
  const shared = isPostgres(sql)
  const currentGeneration = (): number | undefined => (shared || running > 0 ? undefined : generation)

  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

  const resolve = (refs: ReadonlyArray<LayerRef>) =>
    Effect.gen(function* () {
      const dup = duplicateComponent(refs)
      if (dup !== undefined) return yield* new DuplicateComponent({ component: dup })
      return yield* Effect.forEach(refs, (r) =>
        Effect.flatMap(findVersion(r.component, r.version), (v) =>
          Option.isSome(v) ? Effect.succeed(v.value) : new VersionNotFound({ component: r.component, version: r.version })
        )
      )
    })

  /** Appends a state and makes it current. */
  const writeState = (configurationId: number, name: string, layers: ReadonlyArray<LayerInfo>, who: Principal) =>
    Effect.gen(function* () {
      const time = yield* now
      const hash = configHash(layers.map((l) => l.hash))
      const stateId = yield* insertState(sql, configurationId, { time, hash, who, layers })
      yield* sql`UPDATE configurations SET state_id = ${stateId} WHERE id = ${configurationId}`
      return { id: stateId, configuration: name, hash, time, who, layers } satisfies StateInfo
    })

  /** Read the current state, check `-expect`, compute the new layers, write them if different: one transaction. */
  const modify = <E>(
    name: string,
    who: Principal,
    expect: Sha256 | undefined,
    next: (current: StateInfo) => Effect.Effect<ReadonlyArray<LayerInfo>, E>
  ) =>
    transaction(
      Effect.gen(function* () {
        // PostgreSQL replicas: hold the configuration row until commit, so a concurrent change waits and
        // then checks `-expect` against what this one wrote (SQLite's single writer did that implicitly).
        yield* sql`SELECT id FROM configurations WHERE name = ${name} ${forUpdate(sql)}`
        const before = yield* currentState(name)
        // A plain change during a rollout would change what the rollout reverts to: refused.
        const [active] = yield* sql<{ target_hash: string }>`SELECT target_hash FROM rollouts WHERE configuration = ${name} AND active = 1`
        if (active !== undefined) return yield* new RolloutInProgress({ name, to: active.target_hash })
        if (expect !== undefined && expect !== before.hash) {
          return yield* new StaleExpect({ name, expected: expect, actual: before.hash })
        }
        const layers = yield* next(before)
        if (sameLayers(layers, before.layers)) return { changed: false, before, after: before } satisfies Change
        const [conf] = yield* sql<{ id: number }>`SELECT id FROM configurations WHERE name = ${name}`
        const after = yield* writeState(conf!.id, name, layers, who)
        return { changed: true, before, after } satisfies Change
      })
    )

  const layerOf = (state: StateInfo, component: string) => {
    const i = state.layers.findIndex((l) => l.component === component)
    return i < 0 ? Effect.fail(new LayerNotFound({ configuration: state.configuration, component })) : Effect.succeed(i)
  }

  const replaceAt = (layers: ReadonlyArray<LayerInfo>, i: number, v: LayerInfo) => layers.map((l, j) => (j === i ? v : l))

  const addVersion = (component: ComponentName, version: Version, hash: Sha256) =>
    transaction(
      Effect.gen(function* () {
        const ctime = yield* now
        // ON CONFLICT: a concurrent addver of the same version (another replica) loses cleanly.
        const inserted = yield* sql`INSERT INTO versions ${sql.insert({ component, version, hash, ctime: ctime.toISOString() })}
          ON CONFLICT (component, version) DO NOTHING RETURNING id`
        if (inserted.length === 0) return yield* new VersionExists({ component, version })
        return { component, version, hash, ctime } satisfies VersionInfo
      })
    )

  const addConfiguration = (name: ConfigurationName, refs: ReadonlyArray<LayerRef>, who: Principal) =>
    transaction(
      Effect.gen(function* () {
        const existing = yield* sql`SELECT 1 FROM configurations WHERE name = ${name}`
        if (existing.length > 0) return yield* new ConfigurationExists({ name })
        const layers = yield* resolve(refs)
        // state_id 0 until the first state exists (states need the configuration's id). ON CONFLICT: a
        // concurrent addconf of the same name (another replica) loses cleanly.
        const [row] = yield* sql<{ id: number }>`INSERT INTO configurations (name, state_id) VALUES (${name}, 0)
          ON CONFLICT (name) DO NOTHING RETURNING id`
        if (row === undefined) return yield* new ConfigurationExists({ name })
        return yield* writeState(row.id, name, layers, who)
      })
    )

  const changeConfiguration = (name: ConfigurationName, component: ComponentName, version: Version, who: Principal, expect?: Sha256) =>
    modify(name, who, expect, (cur) =>
      Effect.gen(function* () {
        const i = yield* layerOf(cur, component)
        const v = yield* findVersion(component, version)
        if (Option.isNone(v)) return yield* new VersionNotFound({ component, version })
        return replaceAt(cur.layers, i, v.value)
      }).pipe(orStorage)
    )

  const bumpConfiguration = (name: ConfigurationName, component: ComponentName, who: Principal, expect?: Sha256) =>
    modify(name, who, expect, (cur) =>
      Effect.gen(function* () {
        const i = yield* layerOf(cur, component)
        const [newest] = yield* sql<VersionRow>`SELECT id, component, version, hash, ctime FROM versions
          WHERE component = ${component} ORDER BY id DESC LIMIT 1`
        // The layer's own version always exists (in-use versions cannot be deleted), so newest is defined.
        return newest === undefined ? cur.layers : replaceAt(cur.layers, i, toVersion(newest))
      }).pipe(orStorage)
    )

  const replaceConfiguration = (name: ConfigurationName, refs: ReadonlyArray<LayerRef>, who: Principal, expect?: Sha256) =>
    modify(name, who, expect, () => orStorage(resolve(refs)))

  // A rollout's target that never became current (reverted, aborted) is not a state to go back to.
  const wasCurrent = sql`NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.target_state_id = s.id AND r.phase <> 'completed')`

  const rollback = (name: ConfigurationName, to: Sha256 | undefined, who: Principal, expect?: Sha256) =>
    modify(name, who, expect, (cur) =>
      Effect.gen(function* () {
        const rows = yield* sql<StateRow>`SELECT ${stateColumns} FROM states s JOIN configurations c ON c.id = s.configuration_id
          WHERE c.name = ${name} AND s.id < ${cur.id} AND s.hash ${to === undefined ? sql`<>` : sql`=`} ${to ?? cur.hash}
            AND ${wasCurrent}
          ORDER BY s.id DESC LIMIT 1`
        const [target] = yield* statesFrom(rows)
        if (target === undefined) {
          if (to !== undefined && to === cur.hash) return cur.layers // already there: no change
          return yield* new RollbackUnavailable({
            message:
              to === undefined
                ? `configuration "${name}" has no earlier state to roll back to`
                : `configuration "${name}" never had hash ${to}`
          })
        }
        for (const l of target.layers) {
          const v = yield* findVersion(l.component, l.version)
          if (Option.isNone(v)) {
            return yield* new RollbackUnavailable({
              message: `cannot roll back to ${target.hash}: version "${l.version}" of component "${l.component}" has been removed`
            })
          }
          if (v.value.hash !== l.hash) {
            return yield* new RollbackUnavailable({
              message: `cannot roll back to ${target.hash}: version "${l.version}" of component "${l.component}" now has different content`
            })
          }
        }
        return target.layers
      }).pipe(orStorage)
    )

  const deleteVersion = (component: string, version: string) =>
    transaction(
      Effect.gen(function* () {
        if (Option.isNone(yield* findVersion(component, version))) return yield* new VersionNotFound({ component, version })
        const user = yield* usedBy(component, version)
        if (user !== undefined) return yield* new VersionInUse({ configuration: user })
        yield* sql`DELETE FROM versions WHERE component = ${component} AND version = ${version}`
      })
    )

  const deleteComponent = (component: string) =>
    transaction(
      Effect.gen(function* () {
        const rows = yield* sql`SELECT 1 FROM versions WHERE component = ${component} LIMIT 1`
        if (rows.length === 0) return yield* new ComponentNotFound({ name: component })
        const user = yield* usedBy(component)
        if (user !== undefined) return yield* new ComponentInUse({ configuration: user })
        yield* sql`DELETE FROM versions WHERE component = ${component}`
      })
    )

  const deleteConfiguration = (name: string) =>
    transaction(
      Effect.gen(function* () {
        const rows = yield* sql`DELETE FROM configurations WHERE name = ${name} RETURNING id`
        if (rows.length === 0) return yield* new ConfigurationNotFound({ name })
      })
    )

  const pruneVersions = (keep: number) =>
    transaction(
      Effect.gen(function* () {
        const doomed = yield* sql<VersionRow>`SELECT v.id, v.component, v.version, v.hash, v.ctime FROM versions v
          WHERE (SELECT CAST(COUNT(*) AS INTEGER) FROM versions w WHERE w.component = v.component AND w.id > v.id) >= ${Math.max(0, keep)}
            AND NOT EXISTS (SELECT 1 FROM configurations c JOIN state_layers l ON ${servedBy}
                            WHERE l.component = v.component AND l.version = v.version)
          ORDER BY v.component, v.id`
        for (const ids of chunks(doomed.map((d) => d.id))) yield* sql`DELETE FROM versions WHERE ${sql.in("id", ids)}`
        return doomed.map(toVersion)
      })
    )


  return {
    generation: currentGeneration, transaction, addVersion, addConfiguration, changeConfiguration, bumpConfiguration, replaceConfiguration, rollback,
    deleteVersion, deleteComponent, deleteConfiguration, pruneVersions
  }
}
