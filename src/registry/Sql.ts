// The SqlClient the registry's metadata lives in: SQLite in <dir>/state.db (WAL, so readers such as
// `verify` never block the server), PostgreSQL when -db names one (docs/scale-out.md), or an
// in-memory database for unit tests.
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import type { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer } from "effect"
import { copyFile, mkdir, mkdtemp, rm, stat } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { StorageError } from "../domain/Errors.js"

/**
 * Per-connection settings. synchronous=FULL: a command that returned success survives a power cut
 * (WAL's default NORMAL may lose the last transactions). busy_timeout: a second process (verify,
 * a backup) waits for the writer instead of failing with SQLITE_BUSY.
 */
const pragmas = Layer.effectDiscard(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe("PRAGMA busy_timeout = 5000")
    yield* sql.unsafe("PRAGMA synchronous = FULL")
    yield* sql.unsafe("PRAGMA foreign_keys = ON")
  })
)

const open = (filename: string, readonly: boolean) =>
  pragmas.pipe(Layer.provideMerge(SqliteClient.layer({ filename, readonly })))

const fsError = (reason: string) => (cause: unknown) => new StorageError({ reason, cause })

const exists = (p: string) =>
  Effect.promise(() =>
    stat(p).then(
      () => true,
      () => false
    )
  )

/**
 * Read-only access that leaves the directory exactly as it was. SQLite opens a WAL database
 * read-only by creating -wal/-shm beside it, which a read-only connection cannot remove (and which,
 * made by root, lock the registry's own user out). So: while -shm exists (the registry is running,
 * or crashed) open in place, nothing new is created; otherwise (stopped cleanly) read a private copy
 * of state.db (and of -wal, if a crash left one), removed when the layer is released.
 */
const readonlyDatabase = (dir: string) =>
  Effect.gen(function* () {
    const db = path.join(dir, "state.db")
    if (!(yield* exists(db))) return yield* new StorageError({ reason: "no database in the data directory" })
    if (yield* exists(`${db}-shm`)) return open(db, true)
    const copyDir = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => mkdtemp(path.join(os.tmpdir(), "registry-verify-")), catch: fsError("cannot copy the database") }),
      (d) => Effect.promise(() => rm(d, { recursive: true, force: true }))
    )
    const copy = path.join(copyDir, "state.db")
    yield* Effect.tryPromise({ try: () => copyFile(db, copy), catch: fsError("cannot copy the database") })
    if (yield* exists(`${db}-wal`)) {
      yield* Effect.tryPromise({ try: () => copyFile(`${db}-wal`, `${copy}-wal`), catch: fsError("cannot copy the database") })
    }
    return open(copy, false)
  })

/** A `postgres://` URL (-db, DATABASE_URL) rather than a file. */
export const isPostgresUrl = (db: string) => /^postgres(ql)?:\/\//.test(db)

/**
 * PostgreSQL at `url` (PgClient and SqlClient), on a pool of RegistryPgClients (PgConnection.ts: the
 * limits of every connection). The pool reconnects by itself: a database restart fails the statements
 * in flight, the next ones get fresh connections; the registry survives it without a restart.
 */
export const SqlPostgres = (url: string): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, StorageError> =>
  // Loaded only when asked for: pg and @effect/sql-pg cost ~70 ms of every start on SQLite otherwise.
  Layer.unwrapEffect(
    Effect.map(Effect.promise(() => Promise.all([import("@effect/sql-pg"), import("./PgConnection.js")])), ([{ PgClient }, { CONNECT_MS, makePool }]) =>
      PgClient.layerFromPool({
        applicationName: "deploy-registry",
        // The first connection proves the URL (a registry that cannot reach its database does not start).
        acquire: Effect.acquireRelease(
          Effect.flatMap(Effect.sync(() => makePool(url)), (pool) =>
            Effect.tryPromise({
              try: () => pool.query("SELECT 1"),
              // The driver's reason (refused, unknown database, authentication) is what the operator needs.
              catch: (cause) => new SqlError({ cause, message: cause instanceof Error ? cause.message : "cannot connect" })
            }).pipe(
              Effect.timeoutFail({ duration: CONNECT_MS, onTimeout: () => new SqlError({ message: "connection timed out" }) }),
              Effect.tapError(() => Effect.promise(() => pool.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))),
              Effect.as(pool)
            )
          ),
          (pool) => Effect.promise(() => pool.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))
        )
      })
    )
  ).pipe(Layer.mapError((cause) => new StorageError({ reason: "cannot connect to the PostgreSQL database", cause })))

export interface SqlOptions {
  /** Tools that only look (verify): nothing in the directory changes. */
  readonly readonly?: boolean
  /** A PostgreSQL URL: the metadata lives there instead of <dir>/state.db. */
  readonly db?: string | undefined
}

/** `<dir>/state.db`, creating `dir` when missing (fault 11), or PostgreSQL when `db` is given. */
export const SqlLive = (dir: string, options: SqlOptions = {}): Layer.Layer<SqlClient.SqlClient, StorageError> =>
  options.db !== undefined ? SqlPostgres(options.db) : Layer.unwrapScoped(
    options.readonly
      ? readonlyDatabase(dir)
      : Effect.tryPromise({ try: () => mkdir(dir, { recursive: true }), catch: fsError("cannot create the data directory") }).pipe(
          Effect.as(open(path.join(dir, "state.db"), false))
        )
  ).pipe(Layer.mapError((e) => (e instanceof StorageError ? e : new StorageError({ reason: "cannot open the database", cause: e }))))

/** A fresh, private in-memory database per build of the layer (tests). */
export const SqlMemory = open(":memory:", false).pipe(
  Layer.mapError((cause) => new StorageError({ reason: "cannot open the database", cause }))
)
