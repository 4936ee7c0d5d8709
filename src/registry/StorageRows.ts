// The rows of Storage's tables and what they map to, and the helpers its reads and changes share.
import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import type { LayerRef } from "../domain/Commands.js"
import { blobFile, ConfigurationDocument, DocumentLayer } from "../domain/Document.js"
import { StorageError } from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../domain/Names.js"
import type { Principal } from "../domain/Principal.js"

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

export interface VersionRow {
  readonly id: number
  readonly component: string
  readonly version: string
  readonly hash: string
  readonly ctime: string
}

export interface StateRow {
  readonly id: number
  readonly configuration_id: number
  readonly name: string
  readonly time: string
  readonly hash: string
  readonly who_user: string
  readonly who_fingerprint: string
  readonly who_comment: string
}

export interface LayerRow {
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

export const toVersion = (r: VersionRow | LayerRow): VersionInfo => ({
  component: r.component,
  version: r.version,
  hash: r.hash as Sha256,
  ctime: new Date(r.ctime)
})

export const sameLayers = (a: ReadonlyArray<LayerInfo>, b: ReadonlyArray<LayerInfo>) =>
  a.length === b.length &&
  a.every((l, i) => l.component === b[i]!.component && l.version === b[i]!.version && l.hash === b[i]!.hash)

export const chunks = <A>(xs: ReadonlyArray<A>, size = 500): Array<ReadonlyArray<A>> =>
  Array.from({ length: Math.ceil(xs.length / size) }, (_, i) => xs.slice(i * size, (i + 1) * size))

export const duplicateComponent = (refs: ReadonlyArray<LayerRef>): string | undefined => {
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

// Rows were validated on the way in, so no re-validation here: agents read documents on every poll.
export const toDocument = (s: StateInfo) =>
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
