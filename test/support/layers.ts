// The registry core (Sql, Storage, BlobStore, Uploads, CommandInterpreter) on a temp dir, for unit tests.
import { SqlClient } from "@effect/sql"
import { Effect, Layer, type Scope } from "effect"
import { createHash } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type { Sha256 } from "../../src/domain/Names.js"
import { layerOf } from "./tar.js"
import { Principal } from "../../src/domain/Principal.js"
import { BlobStore, BlobStoreLive } from "../../src/registry/BlobStore.js"
import { ChangeFeed, ChangeFeedLive, ChangeFeedStorage } from "../../src/registry/ChangeFeed.js"
import { CommandInterpreter, CommandInterpreterLive } from "../../src/registry/CommandInterpreter.js"
import { HostStatus, HostStatusLive } from "../../src/registry/HostStatus.js"
import { LayerVerdicts, LayerVerdictsInline } from "../../src/registry/LayerVerdicts.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { Rollouts, RolloutsLive } from "../../src/registry/Rollouts.js"
import { PgBlobStoreLive } from "../../src/registry/PgBlobStore.js"
import { SqlLive, SqlMemory, SqlPostgres } from "../../src/registry/Sql.js"
import { Signatures, SignaturesLive } from "../../src/registry/Signatures.js"
import { Storage, StorageLive } from "../../src/registry/Storage.js"
import { Uploads, UploadsLive } from "../../src/registry/Uploads.js"

export type Core = Storage | BlobStore | Uploads | CommandInterpreter | RegistryConfig | SqlClient.SqlClient | LayerVerdicts | Signatures | ChangeFeed | HostStatus | Rollouts

export interface CoreOptions {
  /** "memory" (default): a private :memory: database; "file": <dir>/state.db; `postgres`: that database, blobs in it too. */
  readonly db?: "memory" | "file" | { readonly postgres: string }
  readonly maxVersions?: number
}

/** The whole core on `dir` (which the caller owns). */
export const coreLayer = (dir: string, options: CoreOptions = {}): Layer.Layer<Core, unknown> => {
  const postgres = typeof options.db === "object" ? options.db.postgres : undefined
  const config = RegistryConfig.make(dir, { ...(options.maxVersions === undefined ? {} : { maxVersions: options.maxVersions }), db: postgres })
  const sql = postgres !== undefined ? SqlPostgres(postgres) : options.db === "file" ? SqlLive(dir) : SqlMemory
  // As main.ts wires it: Storage publishing to the change feed; HostStatus after the migrations.
  const storage = RolloutsLive().pipe(Layer.provideMerge(HostStatusLive)).pipe(
    Layer.provideMerge(ChangeFeedStorage.pipe(Layer.provide(StorageLive), Layer.provideMerge(ChangeFeedLive))),
    Layer.provideMerge(sql)
  )
  // As main.ts: with PostgreSQL the blobs live in it (after the migrations, which Storage runs).
  const blobs = postgres !== undefined ? PgBlobStoreLive.pipe(Layer.provide(storage)) : BlobStoreLive
  const files = Layer.mergeAll(blobs, UploadsLive).pipe(Layer.provideMerge(config))
  const base = Layer.mergeAll(storage, SignaturesLive.pipe(Layer.provide(storage)), files, LayerVerdictsInline)
  return CommandInterpreterLive.pipe(Layer.provideMerge(base))
}

/** A temp dir removed when the scope closes. */
export const tempDirScoped = (prefix = "registry-test-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

/** The core on `dialect`'s fresh database (SQLite in memory, or a new PostgreSQL database with the blobs in it). */
export const TestCoreOn = (dialect: { readonly db: Effect.Effect<string | undefined> }, options: Omit<CoreOptions, "db"> = {}) =>
  Layer.unwrapEffect(Effect.map(dialect.db, (url) => TestCore(url === undefined ? options : { ...options, db: { postgres: url } })))

/** The core on a fresh temp dir (removed when the layer is released). */
export const TestCore = (options: CoreOptions = {}): Layer.Layer<Core, unknown> =>
  Layer.unwrapScoped(Effect.map(tempDirScoped(), (dir) => coreLayer(dir, options)))

export const sha256 = (bytes: Uint8Array | string): Sha256 => createHash("sha256").update(bytes).digest("hex") as Sha256

export { layerOf }

/** Stages `bytes` (a string: `layerOf` it) as a completed upload, as the SFTP server would; returns its hash. */
export const stageUpload = (bytes: Uint8Array | string) =>
  Effect.gen(function* () {
    const data = typeof bytes === "string" ? layerOf(bytes) : bytes
    const hash = sha256(data)
    yield* (yield* Uploads).stage(data, hash)
    return hash
  })

export const alice = new Principal({ user: "alice", fingerprint: "SHA256:aliceFingerprint", comment: "alice@laptop" })
export const bob = new Principal({ user: "bob", fingerprint: "SHA256:bobFingerprint", comment: "" })

/** Runs one console line as `who` (alice by default). */
export const run = (line: string, who: Principal = alice) => Effect.flatMap(CommandInterpreter, (c) => c.run(line, who))

/** Every row of every table, in a stable order: compare before/after to prove a command changed nothing. */
export const dumpTables = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const out: Record<string, ReadonlyArray<unknown>> = {}
  for (const t of ["versions", "configurations", "states", "state_layers"]) {
    out[t] = yield* sql.unsafe(`SELECT * FROM ${t} ORDER BY 1, 2`)
  }
  return out
})
