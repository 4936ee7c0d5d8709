// PostgreSQL for test files: one server per file (usePostgres), a database per test, and the registry's
// two dialects for `describe.each(testDialects())`. The server itself: postgresServer.ts.
import type { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import { migrate } from "../../src/registry/Migrations.js"
import { SqlMemory, SqlPostgres } from "../../src/registry/Sql.js"
import { postgresMissing, startPostgres, type TestPostgres } from "./postgresServer.js"

export { postgresBinDir, postgresMissing, startPostgres, type TestPostgres } from "./postgresServer.js"

/**
 * One PostgreSQL for the calling test file (started in beforeAll, stopped in afterAll). Use inside a
 * `describe.skipIf(postgresMissing() !== undefined)`; `pg()` is the running server.
 */
export const usePostgres = (): (() => TestPostgres) => {
  let server: TestPostgres | undefined
  beforeAll(async () => {
    server = await startPostgres()
  }, 60_000)
  afterAll(async () => {
    await server?.stop()
  })
  return () => {
    if (server === undefined) throw new Error("PostgreSQL is not running (usePostgres outside its describe?)")
    return server
  }
}

/** One database dialect the registry runs on, for `describe.each(testDialects())`. */
export interface TestDialect {
  readonly dialect: "sqlite" | "postgres"
  /** Why this dialect's tests are skipped here, if they are. */
  readonly skip: string | undefined
  /** A fresh database per build (empty, or migrated: see testDialects): SQLite in memory, or a new PostgreSQL database (its URL in `db`). */
  readonly sql: Layer.Layer<SqlClient.SqlClient, unknown>
  /** undefined for SQLite; a new PostgreSQL database's URL per run. */
  readonly db: Effect.Effect<string | undefined>
}

/** Per server: a database the registry's migrations ran on, that nobody stays connected to (a template). */
const migratedTemplates = new WeakMap<TestPostgres, Promise<string>>()
const migratedTemplate = (server: TestPostgres): Promise<string> => {
  let t = migratedTemplates.get(server)
  if (t === undefined) {
    t = server.createDatabase().then(async (url) => {
      await Effect.runPromise(Effect.orDie(migrate).pipe(Effect.provide(SqlPostgres(url))))
      return new URL(url).pathname.slice(1)
    })
    migratedTemplates.set(server, t)
  }
  return t
}

/**
 * SQLite and PostgreSQL (one server for the calling file, started only when the binaries exist). Call
 * at the top of a test file; each test that builds `sql` gets its own database. With `migrated`, each
 * PostgreSQL database is a copy of one the migrations ran on once for the file (CREATE DATABASE …
 * TEMPLATE): the registry's migrate then finds nothing to do, where it cost ~0.1 s of CPU per test
 * (SQLite in memory migrates as before). Tests of the migrations themselves keep empty databases.
 */
export const testDialects = (options: { readonly migrated?: boolean } = {}): ReadonlyArray<TestDialect> => {
  const missing = postgresMissing()
  const pg = missing === undefined ? usePostgres() : undefined
  const pgDb = Effect.promise(async () => pg!().createDatabase(options.migrated === true ? await migratedTemplate(pg!()) : undefined))
  return [
    { dialect: "sqlite", skip: undefined, sql: SqlMemory, db: Effect.succeed(undefined) },
    { dialect: "postgres", skip: missing, sql: Layer.unwrapEffect(Effect.map(pgDb, SqlPostgres)), db: pgDb }
  ]
}
