// PostgreSQL for test files: one server per file (usePostgres), a database per test, and the registry's
// two dialects for `describe.each(testDialects())`. The server itself: postgresServer.ts.
import type { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
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
  /** A fresh, empty database per build: SQLite in memory, or a new PostgreSQL database (its URL in `db`). */
  readonly sql: Layer.Layer<SqlClient.SqlClient, unknown>
  /** undefined for SQLite; a new PostgreSQL database's URL per run. */
  readonly db: Effect.Effect<string | undefined>
}

/**
 * SQLite and PostgreSQL (one server for the calling file, started only when the binaries exist). Call
 * at the top of a test file; each test that builds `sql` gets its own database.
 */
export const testDialects = (): ReadonlyArray<TestDialect> => {
  const missing = postgresMissing()
  const pg = missing === undefined ? usePostgres() : undefined
  const pgDb = Effect.promise(() => pg!().createDatabase())
  return [
    { dialect: "sqlite", skip: undefined, sql: SqlMemory, db: Effect.succeed(undefined) },
    { dialect: "postgres", skip: missing, sql: Layer.unwrapEffect(Effect.map(pgDb, SqlPostgres)), db: pgDb }
  ]
}
