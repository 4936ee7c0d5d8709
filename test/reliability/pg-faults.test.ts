// Faults of a registry on PostgreSQL (-db), as the BUILT programs (`npm run build` first), in the
// reliability tier (vitest.config.ts; CI runs it in full): a registry killed in the middle of an upload or
// of addver's transaction leaves nothing in the database; registries sharing a database server recover
// from its restart (kill -9, fast shutdown, while they are paused, while a change waits on a row lock) by
// themselves, within RECOVERY_MS. The plain end-to-end case is test/registry/PgRegistry.test.ts.
import { SqlClient } from "@effect/sql"
import { Effect, Fiber, Layer } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { sweepPass } from "../../src/registry/Janitor.js"
import { PgBlobStoreLive } from "../../src/registry/PgBlobStore.js"
import { clientConfig, RegistryPgClient } from "../../src/registry/PgConnection.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { UploadsLive } from "../../src/registry/Uploads.js"
import { tarGz } from "../agent/fixtures.js"
import { ctlMain } from "../ctl/harness.js"
import { addVersion, exec } from "../agent/operator.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"
import { counts, node, pgRegistry, query } from "../support/pgRegistry.js"
import { registryMain, tempDir, type TestRegistry } from "../support/registry.js"
import { startSibling } from "../support/replicas.js"
import { testResources } from "../support/resources.js"

/** After the database is back, every registry answers every command within this (docs/scale-out.md). */
const RECOVERY_MS = 5000
/** Rounds of database restarts (PG_RESTART_ROUNDS=20 to look for rare cases; one in CI). */
const ROUNDS = Number(process.env.PG_RESTART_ROUNDS ?? 1)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Uploads streamed into the database and not (yet) linked to a blob: rows, and their chunks. */
const staged = async (url: string) =>
  (await query<{ uploads: number; chunks: number }>(url,
    "SELECT (SELECT COUNT(*) FROM staged_uploads)::int AS uploads, (SELECT COUNT(*) FROM blob_chunks WHERE upload IS NOT NULL)::int AS chunks"))[0]!

/** The leader janitor's upload sweep against `url`, with a TTL of 0 (everything staged so far is old enough). */
const sweepNow = async (url: string) => {
  const dir = await tempDir("pg-sweep-")
  try {
    const config = RegistryConfig.make(dir, { uploadTtl: 0 })
    return await Effect.runPromise(sweepPass.pipe(
      Effect.provide(Layer.mergeAll(PgBlobStoreLive, UploadsLive).pipe(Layer.provideMerge(Layer.merge(SqlPostgres(url), config))))
    ))
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
}

describe.skipIf(postgresMissing() !== undefined)("deploy-registry -db postgres://…: faults", () => {
  const pg = usePostgres()
  const res = testResources()
  const registry = pgRegistry(res)

  it("a registry killed mid-upload or inside addver's transaction leaves nothing visible, the janitor sweeps what it staged; the upload then succeeds", async () => {
    const url = await pg().createDatabase()
    const reg = await registry(url)
    const work = await tempDir("pg-work-")
    res.dirs.push(work)
    // ~20 MiB that gzip cannot shrink: dozens of chunk rows, so the kill lands inside the transaction.
    const big = tarGz([{ path: "app/main.js", content: "big" }, { path: "app/noise", content: randomBytes(20 * 1024 * 1024) }])
    await fs.writeFile(path.join(work, "big.tar.gz"), big)
    const addver = () =>
      node([ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "addver", "-name", "app", "-version", "v01", "-file", "big.tar.gz"], work)
    const until = async (what: string, ready: () => Promise<boolean>) => {
      for (let i = 0; !(await ready()); i++) {
        if (i > 4000) throw new Error(`never saw ${what}:\n${reg.log()}`)
        await new Promise((r) => setTimeout(r, 5))
      }
    }

    // 1. Killed while the SFTP upload streams in: a temp file in uploads/ has bytes, and chunks are
    // staged in the database already.
    const first = addver()
    await until("an upload in progress, streaming into the database", async () => {
      const names = await fs.readdir(path.join(reg.dir, "uploads")).catch(() => [] as Array<string>)
      let local = false
      for (const n of names.filter((n) => n.startsWith(".tmp-"))) {
        if (((await fs.stat(path.join(reg.dir, "uploads", n)).catch(() => undefined))?.size ?? 0) > 0) local = true
      }
      return local && (await staged(url)).chunks > 0
    })
    await reg.stop("SIGKILL")
    expect((await first).code).not.toBe(0)
    expect(await counts(url)).toEqual({ blobs: 0, chunks: 0, versions: 0 })
    // What the killed upload staged is no reader's; the janitor's sweep removes it.
    expect((await staged(url)).uploads).toBe(1)
    expect(await sweepNow(url)).toBeGreaterThanOrEqual(1)
    expect(await staged(url)).toEqual({ uploads: 0, chunks: 0 })

    // 2. Killed inside addver's transaction (it recorded the version and waits to insert the blob's row
    // behind the test's own uncommitted insert of it, seen in pg_stat_activity), before its commit.
    await reg.restart()
    const hash = createHash("sha256").update(big).digest("hex")
    const blocker = Effect.runFork(Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql.withTransaction(Effect.zipRight(sql`INSERT INTO blobs (hash, size, created) VALUES (${hash}, 0, '')`, Effect.never))
    ).pipe(Effect.provide(SqlPostgres(url))))
    const second = addver()
    await until("addver inside its transaction", async () =>
      (await query<{ n: number }>(url,
        "SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name = 'deploy-registry' AND query LIKE 'INSERT INTO blobs%' AND wait_event_type = 'Lock'"))[0]!.n > 0)
    await reg.stop("SIGKILL")
    await Effect.runPromise(Fiber.interrupt(blocker))
    expect((await second).code).not.toBe(0)
    expect(await counts(url)).toEqual({ blobs: 0, chunks: 0, versions: 0 })

    // 3. After a restart the same addver goes through, and verify is clean.
    await reg.restart()
    const third = await addver()
    expect(third.code, third.out + reg.log()).toBe(0)
    expect(await counts(url)).toEqual({ blobs: 1, chunks: Math.ceil(big.length / (1024 * 1024)), versions: 1 })
    const verified = await node([registryMain, "verify", "-db", url])
    expect(verified.code, verified.out).toBe(0)
    // addver linked its own staged upload; the one killed in addver (step 2) is left, complete: swept,
    // the blob's chunks stay.
    expect((await staged(url)).uploads).toBe(1)
    await sweepNow(url)
    expect(await staged(url)).toEqual({ uploads: 0, chunks: 0 })
    expect(await counts(url)).toEqual({ blobs: 1, chunks: Math.ceil(big.length / (1024 * 1024)), versions: 1 })
  })


  it("registries sharing the database server recover from its restarts under load, without a restart of their own", async () => {
    const url = await pg().createDatabase()
    const args = ["-db", url]
    const first = await registry(url)
    const replicas = [first, await startSibling(first, args), await startSibling(first, args)]
    for (const r of replicas.slice(1)) {
      res.registries.push(r)
      res.dirs.push(r.dir)
    }
    for (let v = 0; v < 3; v++) await addVersion(first, "code", `v${v}`, tarGz([{ path: "a", type: "file", content: `v${v}` }]))
    expect((await exec(first, "addconf -name p1 -layer code:v0")).code).toBe(0)

    // Reads and writes on every registry all along; failures while the database is away are expected.
    let loading = true
    let n = 0
    const load = async (reg: TestRegistry) => {
      while (loading) {
        const i = n++
        await Promise.all([exec(reg, "configurations"), exec(reg, `changeconf -name p1 -component code -version v${i % 3}`),
          exec(reg, `addconf -name load${i} -layer code:v1`)]).catch(() => undefined)
        await sleep(20)
      }
    }
    const loads = replicas.map(load)
    /** Every command answers correctly on `reg`; the time it took from `t0`, or the failure at RECOVERY_MS. */
    const recovered = async (reg: TestRegistry, t0: number) => {
      for (let i = 0; ; i++) {
        const rs = await Promise.all([exec(reg, "configurations"), exec(reg, `changeconf -name p1 -component code -version v${i % 3}`),
          exec(reg, `addconf -name probe${reg.port}_${t0}_${i} -layer code:v2`), exec(reg, "showconf -name p1")]).catch((e: Error) => [{ code: -1, output: e.message }])
        if (rs.every((r) => r.code === 0)) return Date.now() - t0
        if (Date.now() - t0 > RECOVERY_MS) return `${reg.addr} still failing after ${RECOVERY_MS} ms: ${rs.map((r) => r.output.trim()).join(" | ")}\n${reg.log().slice(-3000)}`
        await sleep(100)
      }
    }
    const rounds: Array<string> = []
    const restart = async (what: string, signal: NodeJS.Signals, paused: boolean) => {
      // Paused registries (an overloaded host) read the server's goodbye together with whatever came before it.
      if (paused) for (const r of replicas) r.signal("SIGSTOP")
      await pg().kill(signal)
      await pg().restart()
      if (paused) for (const r of replicas) r.signal("SIGCONT")
      const t0 = Date.now()
      const times = await Promise.all(replicas.map((r) => recovered(r, t0)))
      for (const t of times) expect(typeof t === "number" ? "recovered" : t, what).toBe("recovered")
      rounds.push(`${what}: ${times.join("/")} ms`)
    }
    try {
      await sleep(500)
      for (let round = 1; round <= ROUNDS; round++) {
        const of = ROUNDS > 1 ? ` (${round})` : ""
        await restart(`kill -9${of}`, "SIGKILL", false)
        await restart(`kill -9 while paused${of}`, "SIGKILL", true)
        await restart(`fast shutdown while paused${of}`, "SIGINT", true)

        // The server dies while the registries open connections (the pool's, the change feed's LISTEN
        // renewal): the stopped postmaster holds their attempts for a while, answers them while the
        // registries are paused, and dies; each registry then reads the server's welcome and its goodbye
        // at once. That killed registries (an 'error' event nobody listened to).
        await pg().kill("SIGKILL")
        await pg().restart()
        pg().signal("SIGSTOP")
        await sleep(5000)
        for (const r of replicas) r.signal("SIGSTOP")
        pg().signal("SIGCONT")
        await sleep(500)
        await restart(`kill -9 while connecting${of}`, "SIGKILL", true)
      }

      // A change waiting on a row lock when the database goes: it fails with one line; then changes work.
      const holder = new RegistryPgClient(clientConfig(url))
      await holder.connect()
      await holder.query("BEGIN")
      await holder.query("SELECT id FROM configurations WHERE name = 'p1' FOR UPDATE")
      const waiting = exec(first, "changeconf -name p1 -component code -version v2")
      await sleep(300)
      await restart("kill -9 with a change waiting on FOR UPDATE", "SIGKILL", false)
      const failed = await waiting
      expect(failed.code).toBe(1)
      expect(failed.output).toMatch(/^internal error[^\n]*\n$/)
      await holder.end()
    } finally {
      // Nothing stays paused after a failure (a stopped postmaster would not stop at the end).
      pg().signal("SIGCONT")
      for (const r of replicas) r.signal("SIGCONT")
      loading = false
      await Promise.all(loads)
    }
    console.log(`database restarts, time until all 3 registries answer every command: ${rounds.join("; ")}`)
    for (const r of replicas) expect(r.log()).not.toMatch(/Unhandled 'error' event/)
  }, 60_000 + ROUNDS * 30_000)
})
