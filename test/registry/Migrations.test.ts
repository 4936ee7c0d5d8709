import { Migrator, SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { migrate, migrations } from "../../src/registry/Migrations.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { testDialects } from "../support/postgres.js"

const dialects = testDialects()
const postgres = dialects.find((d) => d.dialect === "postgres")!

/** Table → column names of the registry's schema, read from the catalogue of either database. */
const schema = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.onDialectOrElse({
    pg: () => sql<{ t: string; c: string }>`SELECT table_name AS t, column_name AS c FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name NOT IN ('blobs', 'blob_chunks', 'staged_uploads', 'schema_migrations', 'replicas', 'replica_sessions')`,
    orElse: () => sql<{ t: string; c: string }>`SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p
      WHERE m.type = 'table' AND m.name NOT IN ('sqlite_sequence', 'schema_migrations')`
  })
  const out: Record<string, Array<string>> = {}
  for (const r of rows) (out[r.t] ??= []).push(r.c === "rowid" ? "" : r.c)
  for (const t of Object.keys(out)) out[t] = out[t]!.filter((c) => c !== "").sort()
  return out
})

describe("migrations", () => {
  it.effect("SQLite and PostgreSQL get the same tables and columns", () =>
    Effect.gen(function* () {
      const [sqlite, pg] = yield* Effect.all(
        dialects.filter((d) => d.skip === undefined).map((d) => Effect.zipRight(Effect.orDie(migrate), schema).pipe(Effect.provide(d.sql)))
      )
      expect(Object.keys(sqlite!).length).toBeGreaterThan(5)
      if (pg !== undefined) expect(pg).toEqual(sqlite)
    })
  )

  it.effect.skipIf(postgres.skip !== undefined)(
    "on PostgreSQL: no int8 column a read would get as a string, names in byte order, and two replicas migrating at once",
    () =>
      Effect.gen(function* () {
        const url = (yield* postgres.db)!
        // Two replicas starting together on an empty database: both come up, the schema is made once.
        const [a, b] = yield* Effect.all([
          Effect.orDie(migrate).pipe(Effect.provide(SqlPostgres(url))),
          Effect.orDie(migrate).pipe(Effect.provide(SqlPostgres(url)))
        ], { concurrency: 2 })
        const applied = [...a!, ...b!].map(([id]) => id).sort((x, y) => x - y)
        expect(applied.length).toBeGreaterThanOrEqual(5)
        expect(applied).toEqual(applied.map((_, i) => i + 1)) // each migration once, none skipped
        const sql = yield* SqlClient.SqlClient
        const int8 = yield* sql<{ t: string; c: string }>`SELECT table_name AS t, column_name AS c FROM information_schema.columns
          WHERE table_schema = 'public' AND data_type = 'bigint' AND NOT (table_name = 'blobs' AND column_name = 'size')`
        expect(int8).toEqual([])
        const notC = yield* sql<{ t: string; c: string }>`SELECT table_name AS t, column_name AS c FROM information_schema.columns
          WHERE table_schema = 'public' AND data_type = 'text' AND table_name <> 'schema_migrations' AND collation_name IS DISTINCT FROM 'C'`
        expect(notC).toEqual([])
      }).pipe(Effect.provide(Layer.unwrapEffect(Effect.map(postgres.db, (u) => SqlPostgres(u!)))))
  )

  it.effect.skipIf(postgres.skip !== undefined)(
    "on PostgreSQL: a database whose replicas made `replicas` and `replica_sessions` themselves migrates cleanly, rows kept",
    () =>
      Effect.gen(function* () {
        // The schema before the migration, and the tables as replicas made them at start then.
        const old = yield* postgres.db
        // Up to the one before `replicas` (the migrator runs only ids above the newest applied).
        const replicasId = (yield* migrations).find(([, name]) => name === "replicas")![0]
        const before = Migrator.make({})({ loader: Effect.map(migrations, (ms) => ms.filter(([id]) => id < replicasId)), table: "schema_migrations" })
        const columns = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql<{ t: string; c: string; type: string; coll: string | null; dflt: string | null }>`SELECT table_name AS t, column_name AS c,
            data_type AS type, collation_name AS coll, column_default AS dflt FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name IN ('replicas', 'replica_sessions') ORDER BY table_name, column_name`)
        const applied = yield* Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* Effect.orDie(before)
          yield* sql`CREATE TABLE IF NOT EXISTS replicas (id TEXT PRIMARY KEY, heartbeat TIMESTAMPTZ NOT NULL DEFAULT now())`
          yield* sql`CREATE TABLE IF NOT EXISTS replica_sessions (configuration TEXT COLLATE "C" NOT NULL, host TEXT COLLATE "C" NOT NULL,
            replica TEXT NOT NULL, PRIMARY KEY (configuration, host, replica))`
          yield* sql`INSERT INTO replicas (id) VALUES ('r1')`
          yield* sql`INSERT INTO replica_sessions (configuration, host, replica) VALUES ('web', 'h1', 'r1')`
          const applied = yield* Effect.orDie(migrate)
          expect(yield* sql`SELECT s.host FROM replica_sessions s JOIN replicas r ON r.id = s.replica`).toEqual([{ host: "h1" }])
          return { applied, cols: yield* columns }
        }).pipe(Effect.provide(SqlPostgres(old!)))
        expect(applied.applied.map(([, name]) => name)[0]).toEqual("replicas")
        // The same tables as a database made by the migrations from scratch.
        const fresh = yield* Effect.zipRight(Effect.orDie(migrate), columns).pipe(Effect.provide(Layer.unwrapEffect(Effect.map(postgres.db, (u) => SqlPostgres(u!)))))
        expect(fresh.map((c) => c.t)).toEqual(["replica_sessions", "replica_sessions", "replica_sessions", "replicas", "replicas"])
        expect(applied.cols).toEqual(fresh)
        // SQLite: no such tables (one process; nothing would write them).
        const sqlite = yield* Effect.zipRight(Effect.orDie(migrate), schema).pipe(Effect.provide(dialects.find((d) => d.dialect === "sqlite")!.sql))
        expect(Object.keys(sqlite).filter((t) => t.startsWith("replica"))).toEqual([])
      })
  )
})
