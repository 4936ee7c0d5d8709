// Metadata of components, versions and configurations over @effect/sql (SQLite by default).
//
// Every method that changes more than one row runs in one transaction; so does a read-check-write
// such as `-expect` (the check and the change see the same state). Callers that must do work
// between validation and commit (addver adopting a blob) compose inside `transaction`.
// The service is assembled here from its reads (StorageReads.ts) and changes (StorageChanges.ts) over the
// rows and mappings of StorageRows.ts.
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, type Option } from "effect"
import type { LayerRef } from "../domain/Commands.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import type {
  ComponentInUse, ComponentNotFound, ConfigurationExists, ConfigurationNotFound, DuplicateComponent, LayerNotFound,
  RollbackUnavailable, RolloutInProgress, StaleExpect, VersionExists, VersionInUse, VersionNotFound
} from "../domain/Errors.js"
import { StorageError } from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../domain/Names.js"
import type { Principal } from "../domain/Principal.js"
import { migrate } from "./Migrations.js"
import { makeChanges } from "./StorageChanges.js"
import { makeReads } from "./StorageReads.js"
import type { Change, StateInfo, VersionInfo } from "./StorageRows.js"

export type { Change, LayerInfo, StateInfo, VersionInfo } from "./StorageRows.js"
export { insertState } from "./StorageRows.js"

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
    /**
     * Where Storage's own changes stand: a number that moves whenever one of them may have committed, and
     * undefined while one runs, and always on PostgreSQL (other replicas write there). A read of the versions
     * or configuration names that began and ended at one number stays current while this returns it: the
     * registry is the only writer of its SQLite database, and every change of those tables is Storage's.
     */
    readonly generation: () => number | undefined
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
    ) => Effect.Effect<Change, ConfigurationNotFound | LayerNotFound | VersionNotFound | StaleExpect | RolloutInProgress | StorageError>
    /** Points one layer at the component's newest version; no change (and no new state) if it is there already (fault 8). */
    readonly bumpConfiguration: (
      name: ConfigurationName,
      component: ComponentName,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | LayerNotFound | StaleExpect | RolloutInProgress | StorageError>
    readonly replaceConfiguration: (
      name: ConfigurationName,
      layers: ReadonlyArray<LayerRef>,
      who: Principal,
      expect?: Sha256
    ) => Effect.Effect<Change, ConfigurationNotFound | DuplicateComponent | VersionNotFound | StaleExpect | RolloutInProgress | StorageError>
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
    ) => Effect.Effect<Change, ConfigurationNotFound | RollbackUnavailable | StaleExpect | RolloutInProgress | StorageError>
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

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const reads = makeReads(sql)
  const changes = makeChanges(sql, reads)
  return Storage.of({
    configurationNames: reads.configurationNames,
    document: reads.document,
    componentNames: reads.componentNames,
    versions: reads.versions,
    allVersions: reads.allVersions,
    generation: changes.generation,
    transaction: changes.transaction,
    addVersion: changes.addVersion,
    addConfiguration: changes.addConfiguration,
    changeConfiguration: changes.changeConfiguration,
    bumpConfiguration: changes.bumpConfiguration,
    replaceConfiguration: changes.replaceConfiguration,
    rollback: changes.rollback,
    current: reads.current,
    history: reads.history,
    deleteVersion: changes.deleteVersion,
    deleteComponent: changes.deleteComponent,
    deleteConfiguration: changes.deleteConfiguration,
    currentStates: reads.currentStates,
    allStates: reads.allStates,
    pruneVersions: changes.pruneVersions
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
