// Metadata of components, versions and configurations over @effect/sql (SQLite by default).
//
// Every method that changes more than one row runs in one transaction; so does a read-check-write
// such as `-expect` (the check and the change see the same state). Callers that must do work
// between validation and commit (addver adopting a blob) compose inside `transaction`.
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Clock, Context, Effect, Layer, Option } from "effect"
import type { LayerRef } from "../domain/Commands.js"
import { configHash } from "../domain/ConfigHash.js"
import { blobFile, ConfigurationDocument, DocumentLayer } from "../domain/Document.js"
import {
  ComponentInUse,
  ComponentNotFound,
  ConfigurationExists,
  ConfigurationNotFound,
  DuplicateComponent,
  LayerNotFound,
  RollbackUnavailable,
  StaleExpect,
  StorageError,
  VersionExists,
  VersionInUse,
  VersionNotFound
} from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../domain/Names.js"
import { Principal } from "../domain/Principal.js"
import { migrate } from "./Migrations.js"

export interface VersionInfo {
  readonly component: string
  readonly version: string
  readonly hash: Sha256
  readonly ctime: Date
}

/** One layer of a state, copied from its version when the state was made. */
export type LayerInfo = VersionInfo

/** One state of a configuration: what it was, since when, who made it. */
export interface StateInfo {
  readonly id: number
  readonly configuration: string
  readonly hash: Sha256
  readonly time: Date
  readonly who: Principal
  readonly layers: ReadonlyArray<LayerInfo>
}

/** The outcome of a change: `changed` is false when the new layers equal the current ones (nothing written). */
export interface Change {
  readonly changed: boolean
  readonly before: StateInfo
  readonly after: StateInfo
}

export class Storage extends Context.Tag("registry/Storage")<
  Storage,
  {
    /** Configuration names in byte order (the agent view lists them so, fault 11). */
    readonly configurationNames: Effect.Effect<ReadonlyArray<string>, StorageError>
    /** The current document of a configuration. */
    readonly document: (name: string) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError>
    /** Component names (those with at least one version) in byte order. */
    readonly componentNames: Effect.Effect<ReadonlyArray<string>, StorageError>
    /** Versions of a component, oldest first. */
    readonly versions: (component: string) => Effect.Effect<ReadonlyArray<VersionInfo>, ComponentNotFound | StorageError>
    /** Every version of every component (verify, retention). */
    readonly allVersions: Effect.Effect<ReadonlyArray<VersionInfo>, StorageError>
    /** Runs `effect` in one database transaction (nested calls use savepoints); any failure rolls back. */
    readonly transaction: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | StorageError, R>
    /** Records a version. Call inside `transaction` together with adopting its blob. */
    readonly addVersion: (
      component: ComponentName,
      version: Version,
      hash: Sha256
    ) => Effect.Effect<VersionInfo, VersionExists | StorageError>
    readonly addConfiguration: (
      name: ConfigurationName,
      layers: ReadonlyArray<LayerRef>,
      who: Principal
    ) => Effect.Effect<StateInfo, ConfigurationExists | DuplicateComponent | VersionNotFound | StorageError>
    readonly changeConfiguration: (
      name: ConfigurationName,
      component: ComponentName,
      version: Version,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | LayerNotFound | VersionNotFound | StaleExpect | StorageError>
    /** Points one layer at the component's newest version; no change (and no new state) if it is there already (fault 8). */
    readonly bumpConfiguration: (
      name: ConfigurationName,
      component: ComponentName,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | LayerNotFound | StaleExpect | StorageError>
    readonly replaceConfiguration: (
      name: ConfigurationName,
      layers: ReadonlyArray<LayerRef>,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | DuplicateComponent | VersionNotFound | StaleExpect | StorageError>
    /**
     * Makes a past state current again, as a new state. Without `to`: the newest earlier state whose
     * hash differs from the current one (so two rollbacks in a row toggle). With `to`: the newest
     * state with that hash. Fails if a version it names was removed or now has other content.
     */
    readonly rollback: (
      name: ConfigurationName,
      to: Sha256 | undefined,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | RollbackUnavailable | StaleExpect | StorageError>
    readonly current: (name: string) => Effect.Effect<StateInfo, ConfigurationNotFound | StorageError>
    /** Every state of the configuration, newest first. */
    /** Newest first; `limit`: only that many. */
    readonly history: (name: string, limit?: number) => Effect.Effect<ReadonlyArray<StateInfo>, ConfigurationNotFound | StorageError>
    /** Refused while a configuration's current state uses the version. The blob stays for retention. */
    readonly deleteVersion: (
      component: string,
      version: string
    ) => Effect.Effect<void, VersionNotFound | VersionInUse | StorageError>
    readonly deleteComponent: (component: string) => Effect.Effect<void, ComponentNotFound | ComponentInUse | StorageError>
    /** Removes the configuration; its past states stay in the table (append-only) but no longer show. */
    readonly deleteConfiguration: (name: string) => Effect.Effect<void, ConfigurationNotFound | StorageError>
    /** Current states of all configurations, by name (verify). */
    readonly currentStates: Effect.Effect<ReadonlyArray<StateInfo>, StorageError>
    /** Every state ever recorded, of existing configurations or not (verify). */
    readonly allStates: Effect.Effect<ReadonlyArray<StateInfo>, StorageError>
    /**
     * Retention: per component removes all but the `keep` newest versions, except versions a current
     * configuration uses. One transaction. Returns the removed versions.
     */
    readonly pruneVersions: (keep: number) => Effect.Effect<ReadonlyArray<VersionInfo>, StorageError>
  }
>() {}

interface VersionRow {
  readonly id: number
  readonly component: string
  readonly version: string
  readonly hash: string
  readonly ctime: string
}

interface StateRow {
  readonly id: number
  readonly configuration_id: number
  readonly name: string
  readonly time: string
  readonly hash: string
  readonly who_user: string
  readonly who_fingerprint: string
  readonly who_comment: string
}

interface LayerRow {
  readonly state_id: number
  readonly component: string
  readonly version: string
  readonly hash: string
  readonly ctime: string
}

const dbError = (cause: unknown) => new StorageError({ reason: "database failure", cause })

/** Turns the driver's SqlError into our StorageError (no SQL or paths reach the operator). */
export const orStorage = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, Exclude<E, SqlError> | StorageError, R> =>
  Effect.mapError(self, (e) => (e instanceof SqlError ? dbError(e) : e)) as Effect.Effect<A, Exclude<E, SqlError> | StorageError, R>

const toVersion = (r: VersionRow | LayerRow): VersionInfo => ({
  component: r.component,
  version: r.version,
  hash: r.hash as Sha256,
  ctime: new Date(r.ctime)
})

const sameLayers = (a: ReadonlyArray<LayerInfo>, b: ReadonlyArray<LayerInfo>) =>
  a.length === b.length &&
  a.every((l, i) => l.component === b[i]!.component && l.version === b[i]!.version && l.hash === b[i]!.hash)

const chunks = <A>(xs: ReadonlyArray<A>, size = 500): Array<ReadonlyArray<A>> =>
  Array.from({ length: Math.ceil(xs.length / size) }, (_, i) => xs.slice(i * size, (i + 1) * size))

const duplicateComponent = (refs: ReadonlyArray<LayerRef>): string | undefined => {
  const seen = new Set<string>()
  for (const r of refs) {
    if (seen.has(r.component)) return r.component
    seen.add(r.component)
  }
  return undefined
}

/**
 * Inserts one state of a configuration with its layers (inside the caller's transaction) and returns its
 * id; making it current is the caller's (`writeState` does, the Go import does for the last one only).
 */
export const insertState = (
  sql: SqlClient.SqlClient,
  configurationId: number,
  state: {
    readonly time: Date
    readonly hash: string
    readonly who: Pick<Principal, "user" | "fingerprint" | "comment">
    readonly layers: ReadonlyArray<{ readonly component: string; readonly version: string; readonly hash: string; readonly ctime: Date }>
  }
) =>
  Effect.gen(function* () {
    const [row] = yield* sql<{ id: number }>`INSERT INTO states ${sql.insert({
      configuration_id: configurationId,
      time: state.time.toISOString(),
      hash: state.hash,
      who_user: state.who.user,
      who_fingerprint: state.who.fingerprint,
      who_comment: state.who.comment
    })} RETURNING id`
    const stateId = row!.id
    if (state.layers.length > 0) {
      yield* sql`INSERT INTO state_layers ${sql.insert(
        state.layers.map((l, position) => ({
          state_id: stateId,
          position,
          component: l.component,
          version: l.version,
          hash: l.hash,
          ctime: l.ctime.toISOString()
        }))
      )}`
    }
    return stateId
  })

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  const transaction = <A, E, R>(effect: Effect.Effect<A, E, R>) => orStorage(sql.withTransaction(effect))

  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

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
      return rows.map(
        (r): StateInfo => ({
          id: r.id,
          configuration: r.name,
          hash: r.hash as Sha256,
          time: new Date(r.time),
          who: new Principal({ user: r.who_user, fingerprint: r.who_fingerprint, comment: r.who_comment }, true),
          layers: byState.get(r.id) ?? []
        })
      )
    })

  const stateColumns = sql`s.id, s.configuration_id, c.name, s.time, s.hash, s.who_user, s.who_fingerprint, s.who_comment`

  const currentState = (name: string) =>
    Effect.gen(function* () {
      const rows = yield* sql<StateRow>`SELECT ${stateColumns} FROM configurations c JOIN states s ON s.id = c.state_id
        WHERE c.name = ${name}`
      const [state] = yield* statesFrom(rows)
      return state === undefined ? yield* new ConfigurationNotFound({ name }) : state
    })

  const findVersion = (component: string, version: string) =>
    Effect.map(
      sql<VersionRow>`SELECT id, component, version, hash, ctime FROM versions WHERE component = ${component} AND version = ${version}`,
      (rows) => Option.map(Option.fromNullable(rows[0]), toVersion)
    )

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
        const before = yield* currentState(name)
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

  const configurationNames = orStorage(
    Effect.map(sql<{ name: string }>`SELECT name FROM configurations ORDER BY name`, (rows) => rows.map((r) => r.name))
  )

  const current = (name: string) => orStorage(currentState(name))

  // Rows were validated on the way in, so no re-validation here: agents read documents on every poll.
  const toDocument = (s: StateInfo) =>
    new ConfigurationDocument(
      {
        Name: s.configuration as ConfigurationName,
        Mtime: s.time,
        Hash: s.hash,
        Layers: s.layers.map(
          (l) =>
            new DocumentLayer(
              { Name: l.component as ComponentName, Version: l.version as Version, File: blobFile(l.hash), Hash: l.hash, Ctime: l.ctime },
              true
            )
        )
      },
      true
    )

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

  const addVersion = (component: ComponentName, version: Version, hash: Sha256) =>
    transaction(
      Effect.gen(function* () {
        if (Option.isSome(yield* findVersion(component, version))) return yield* new VersionExists({ component, version })
        const ctime = yield* now
        yield* sql`INSERT INTO versions ${sql.insert({ component, version, hash, ctime: ctime.toISOString() })}`
        return { component, version, hash, ctime } satisfies VersionInfo
      })
    )

  const addConfiguration = (name: ConfigurationName, refs: ReadonlyArray<LayerRef>, who: Principal) =>
    transaction(
      Effect.gen(function* () {
        const existing = yield* sql`SELECT 1 FROM configurations WHERE name = ${name}`
        if (existing.length > 0) return yield* new ConfigurationExists({ name })
        const layers = yield* resolve(refs)
        // state_id 0 until the first state exists (states need the configuration's id).
        const [row] = yield* sql<{ id: number }>`INSERT INTO configurations (name, state_id) VALUES (${name}, 0) RETURNING id`
        return yield* writeState(row!.id, name, layers, who)
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

  const rollback = (name: ConfigurationName, to: Sha256 | undefined, who: Principal, expect?: Sha256) =>
    modify(name, who, expect, (cur) =>
      Effect.gen(function* () {
        const rows = yield* sql<StateRow>`SELECT ${stateColumns} FROM states s JOIN configurations c ON c.id = s.configuration_id
          WHERE c.name = ${name} AND s.id < ${cur.id} AND s.hash ${to === undefined ? sql`<>` : sql`=`} ${to ?? cur.hash}
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

  const history = (name: string, limit?: number) =>
    orStorage(
      Effect.gen(function* () {
        const rows = yield* sql<StateRow>`SELECT ${stateColumns} FROM states s JOIN configurations c ON c.id = s.configuration_id
          WHERE c.name = ${name} ORDER BY s.id DESC ${limit === undefined ? sql`` : sql`LIMIT ${limit}`}`
        if (rows.length === 0) return yield* new ConfigurationNotFound({ name })
        return yield* statesFrom(rows)
      })
    )

  /** The first configuration (byte order) whose current state uses the component (and version). */
  const usedBy = (component: string, version?: string) =>
    Effect.map(
      sql<{ name: string }>`SELECT c.name FROM configurations c JOIN state_layers l ON l.state_id = c.state_id
        WHERE l.component = ${component} ${version === undefined ? sql`` : sql`AND l.version = ${version}`}
        ORDER BY c.name LIMIT 1`,
      (rows) => rows[0]?.name
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

  const pruneVersions = (keep: number) =>
    transaction(
      Effect.gen(function* () {
        const doomed = yield* sql<VersionRow>`SELECT v.id, v.component, v.version, v.hash, v.ctime FROM versions v
          WHERE (SELECT COUNT(*) FROM versions w WHERE w.component = v.component AND w.id > v.id) >= ${Math.max(0, keep)}
            AND NOT EXISTS (SELECT 1 FROM configurations c JOIN state_layers l ON l.state_id = c.state_id
                            WHERE l.component = v.component AND l.version = v.version)
          ORDER BY v.component, v.id`
        for (const ids of chunks(doomed.map((d) => d.id))) yield* sql`DELETE FROM versions WHERE ${sql.in("id", ids)}`
        return doomed.map(toVersion)
      })
    )

  return Storage.of({
    configurationNames,
    document,
    componentNames,
    versions,
    allVersions,
    transaction,
    addVersion,
    addConfiguration,
    changeConfiguration,
    bumpConfiguration,
    replaceConfiguration,
    rollback,
    current,
    history,
    deleteVersion,
    deleteComponent,
    deleteConfiguration,
    currentStates,
    allStates,
    pruneVersions
  })
})

/** Storage with its schema migrated at start. Requires SqlClient (see Sql.ts). */
export const StorageLive = Layer.effect(
  Storage,
  migrate.pipe(
    Effect.mapError((cause) => new StorageError({ reason: "cannot migrate the database schema", cause })),
    Effect.zipRight(make)
  )
)

/** Storage without touching the schema, for read-only tools (verify on a database another process serves). */
export const StorageReadOnly = Layer.effect(Storage, make)
