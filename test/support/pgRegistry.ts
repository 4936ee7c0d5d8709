// The built registry on PostgreSQL (-db URL), for the integration test (test/registry/PgRegistry.test.ts)
// and the fault tests of the reliability tier (test/reliability/pg-faults.test.ts).
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { startRegistry, type TestRegistry } from "./registry.js"
import type { testResources } from "./resources.js"

/** Runs `node ARGS` (a built program); stdout and stderr together. */
export const node = (args: ReadonlyArray<string>, cwd?: string) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, args, { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    c.stdout.on("data", (b: Buffer) => (out += b.toString()))
    c.stderr.on("data", (b: Buffer) => (out += b.toString()))
    c.once("exit", (code) => resolve({ code, out }))
  })

/** One query against the test database. */
export const query = <A extends object>(url: string, text: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text)).pipe(Effect.provide(SqlPostgres(url)))
  )

/** What readers see: blobs, their chunks (staged uploads' chunks are not theirs), versions. */
export const counts = async (url: string) =>
  (await query<{ blobs: number; chunks: number; versions: number }>(url,
    "SELECT (SELECT COUNT(*) FROM blobs)::int AS blobs, (SELECT COUNT(*) FROM blob_chunks WHERE upload IS NULL)::int AS chunks, (SELECT COUNT(*) FROM versions)::int AS versions"))[0]!

/** A registry on the database at `url` (in `dir`, or a new one), stopped and removed with the file's resources. */
export const pgRegistry = (res: ReturnType<typeof testResources>) => async (url: string, dir?: string): Promise<TestRegistry> => {
  const reg = await startRegistry({ ...(dir === undefined ? {} : { dir }), extraArgs: ["-db", url] })
  res.registries.push(reg)
  res.dirs.push(reg.dir)
  return reg
}
