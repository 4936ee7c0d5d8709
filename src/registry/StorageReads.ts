// Storage's reads: states with their layers, versions, configuration documents. Also the reads its changes
// build on (currentState, findVersion, usedBy), which run inside the caller's transaction.
import type { SqlClient } from "@effect/sql"
import { Effect, Option } from "effect"
import { ComponentNotFound, ConfigurationNotFound } from "../domain/Errors.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import type { Sha256 } from "../domain/Names.js"
import { Principal } from "../domain/Principal.js"
import {
  chunks, type LayerInfo, type LayerRow, orStorage, type StateInfo, type StateRow, toDocument, toVersion, type VersionRow
} from "./StorageRows.js"

const stateInfo = (r: StateRow, layers: ReadonlyArray<LayerInfo>): StateInfo => ({
  id: r.id,
  configuration: r.name,
  hash: r.hash as Sha256,
  time: new Date(r.time),
  who: new Principal({ user: r.who_user, fingerprint: r.who_fingerprint, comment: r.who_comment }, true),
  layers
})

export const makeReads = (sql: SqlClient.SqlClient) => {
  const statesFrom = (rows: ReadonlyArray<StateRow>) =>
    Effect.gen(function* () {
      if (rows.length === 0) return []
      // In chunks: SQLite limits the number of bound parameters per statement.
      const layers = (yield* Effect.forEach(chunks(rows.map((r) => r.id)), (ids) =>
        sql<LayerRow>`SELECT state_id, component, version, hash, ctime FROM state_layers
          WHERE ${sql.in("state_id", ids)} ORDER BY state_id, position`
      )).flat()
      const byState = new Map<number, Array<LayerInfo>>()
      for (const l of layers) {
        const list = byState.get(l.state_id) ?? []
        list.push(toVersion(l))
        byState.set(l.state_id, list)
      }
      return rows.map((r) => stateInfo(r, byState.get(r.id) ?? []))
    })

  const stateColumns = sql`s.id, s.configuration_id, c.name, s.time, s.hash, s.who_user, s.who_fingerprint, s.who_comment`

  /**
   * One statement: the state's columns on each of its layers' rows (every agent poll reads a document, and
   * a second statement for the layers cost as much as the first). A state without layers is one row of NULLs.
   */
  const currentState = (name: string) =>
    Effect.flatMap(
      // LEFT JOIN: a state without layers gives one row whose layer columns are all NULL.
      sql<StateRow & { readonly component: string | null; readonly version: string | null; readonly layer_hash: string | null; readonly layer_ctime: string | null }>`
        SELECT ${stateColumns}, l.component, l.version, l.hash AS layer_hash, l.ctime AS layer_ctime
        FROM configurations c JOIN states s ON s.id = c.state_id LEFT JOIN state_layers l ON l.state_id = s.id
        WHERE c.name = ${name} ORDER BY l.position`,
      (rows): Effect.Effect<StateInfo, ConfigurationNotFound> => {
        const r = rows[0]
        if (r === undefined) return new ConfigurationNotFound({ name })
        const layers = rows.flatMap((l) =>
          l.component === null || l.version === null || l.layer_hash === null || l.layer_ctime === null
            ? []
            : [toVersion({ state_id: l.id, component: l.component, version: l.version, hash: l.layer_hash, ctime: l.layer_ctime })]
        )
        return Effect.succeed(stateInfo(r, layers))
      }
    )

  const findVersion = (component: string, version: string) =>
    Effect.map(
      sql<VersionRow>`SELECT id, component, version, hash, ctime FROM versions WHERE component = ${component} AND version = ${version}`,
      (rows) => Option.map(Option.fromNullable(rows[0]), toVersion)
    )

  /** The states a configuration serves: its current one and its live rollout's target (joined as `c`). */
  const servedBy = sql`(l.state_id = c.state_id OR l.state_id IN (SELECT r.target_state_id FROM rollouts r WHERE r.configuration = c.name AND r.active = 1))`

  /** The first configuration (byte order) whose current state (or live rollout's target) uses the component (and version). */
  const usedBy = (component: string, version?: string) =>
    Effect.map(
      sql<{ name: string }>`SELECT c.name FROM configurations c JOIN state_layers l ON ${servedBy}
        WHERE l.component = ${component} ${version === undefined ? sql`` : sql`AND l.version = ${version}`}
        ORDER BY c.name LIMIT 1`,
      (rows) => rows[0]?.name
    )

  const configurationNames = orStorage(
    Effect.map(sql<{ name: string }>`SELECT name FROM configurations ORDER BY name`, (rows) => rows.map((r) => r.name))
  )

  const current = (name: string) => orStorage(currentState(name))

  const document = (name: string) =>
    current(name).pipe(
      Effect.map((s) => Option.some(toDocument(s))),
      Effect.catchTag("ConfigurationNotFound", () => Effect.succeed(Option.none<ConfigurationDocument>()))
    )

  const componentNames = orStorage(
    Effect.map(sql<{ component: string }>`SELECT DISTINCT component FROM versions ORDER BY component`, (rows) =>
      rows.map((r) => r.component)
    )
  )

  const versions = (component: string) =>
    orStorage(
      Effect.gen(function* () {
        const rows = yield* sql<VersionRow>`SELECT id, component, version, hash, ctime FROM versions
          WHERE component = ${component} ORDER BY id`
        if (rows.length === 0) return yield* new ComponentNotFound({ name: component })
        return rows.map(toVersion)
      })
    )

  const allVersions = orStorage(
    Effect.map(sql<VersionRow>`SELECT id, component, version, hash, ctime FROM versions ORDER BY component, id`, (rows) =>
      rows.map(toVersion)
    )
  )

  const history = (name: string, limit?: number) =>
    orStorage(
      Effect.gen(function* () {
        const rows = yield* sql<StateRow>`SELECT ${stateColumns} FROM states s JOIN configurations c ON c.id = s.configuration_id
          WHERE c.name = ${name} ORDER BY s.id DESC ${limit === undefined ? sql`` : sql`LIMIT ${limit}`}`
        if (rows.length === 0) return yield* new ConfigurationNotFound({ name })
        return yield* statesFrom(rows)
      })
    )

  const currentStates = orStorage(
    Effect.flatMap(
      sql<StateRow>`SELECT ${stateColumns} FROM configurations c JOIN states s ON s.id = c.state_id ORDER BY c.name`,
      statesFrom
    )
  )

  // Left join: states of deleted configurations have no name any more.
  const allStates = orStorage(
    Effect.flatMap(
      sql<StateRow>`SELECT s.id, s.configuration_id, COALESCE(c.name, '') AS name, s.time, s.hash, s.who_user, s.who_fingerprint, s.who_comment
        FROM states s LEFT JOIN configurations c ON c.id = s.configuration_id ORDER BY s.id`,
      statesFrom
    )
  )

  return {
    statesFrom, stateColumns, currentState, findVersion, usedBy, servedBy,
    configurationNames, current, document, componentNames, versions, allVersions, history, currentStates, allStates
  }
}

export type Reads = ReturnType<typeof makeReads>
