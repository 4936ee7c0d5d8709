import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { migrate } from "../../src/registry/Migrations.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { testDialects } from "../support/postgres.js"

const dialects = testDialects()
const postgres = dialects.find((d) => d.dialect === "postgres")!

/** Table → column names of the registry's schema, read from the catalogue of either database. */
const schema = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql.onDialectOrElse({
    pg: () => sql<{ t: string; c: string }>`SELECT table_name AS t, column_name AS c FROM information_schema.columns
      WHERE table_schema = 'public' AND table_name NOT IN ('blobs', 'blob_chunks', 'staged_uploads', 'schema_migrations')`,
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
})
