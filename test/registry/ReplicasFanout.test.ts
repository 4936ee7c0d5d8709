// Two registry replicas (the BUILT program: `npm run build` first) on one real PostgreSQL database:
// - a change reaches N watch sessions of one replica with one read of what the configuration serves
//   (WatchFanout.ts), not one per session: the statements are counted by pg_stat_statements;
// - `rollout` started on both replicas at once: one starts it, the other gets the usual "in progress".
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Client } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { tarGz } from "../agent/fixtures.js"
import { addVersion, currentHash, exec, run } from "../agent/operator.js"
import { type JsonLines, jsonLinesExec } from "../support/jsonLines.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"
import { connectClient, type TestRegistry } from "../support/registry.js"
import { startSibling } from "../support/replicas.js"
import { startRegistry } from "../support/registry.js"
import { testResources } from "../support/resources.js"

/** Watch sessions on one replica: the reads of one change must not grow with them. */
const N = 50

const query = <A extends object>(url: string, text: string) =>
  Effect.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(text)).pipe(Effect.provide(SqlPostgres(url))))

describe.skipIf(postgresMissing() !== undefined)("two replicas on PostgreSQL", () => {
  const pg = usePostgres()
  const res = testResources()
  const clients: Array<Client> = []
  let url = ""
  let a: TestRegistry
  let b: TestRegistry
  const hash: Record<string, string> = {}

  beforeAll(async () => {
    // pg_stat_statements counts every statement the replicas run; it is loaded at the server's start.
    await query(pg().url(), "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    await pg().kill("SIGINT")
    await pg().restart()
    url = await pg().createDatabase()
    await query(url, "CREATE EXTENSION pg_stat_statements")
    // A session ends after two silent intervals: 10 s, so a test process starved under a loaded suite (50
    // sessions, pings from one timer) is not taken for a dead agent and cut off mid-test (seen with 2 s).
    const args = ["-db", url, "-watch-ping", "5s"]
    a = await startRegistry({ extraArgs: args })
    res.registries.push(a)
    res.dirs.push(a.dir)
    b = await startSibling(a, args)
    res.registries.push(b)
    res.dirs.push(b.dir)
    for (const v of ["v1", "v2"]) hash[v] = configHash([await addVersion(a, "code", v, tarGz([{ path: "f", type: "file", content: v }]))])
  }, 90_000)
  afterAll(() => {
    for (const c of clients) c.end()
  })

  /** Calls of the statements that read what a configuration serves: its live rollout, its current state. */
  const documentReads = async () => {
    const rows = await query<{ query: string; calls: number }>(url,
      "SELECT query, calls::int AS calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
    const reads = rows.filter((r) =>
      /FROM rollouts WHERE configuration = \$1 AND active = \$2\s*$/.test(r.query) || /JOIN states s ON s\.id = c\.state_id\s+WHERE c\.name = \$1/.test(r.query))
    return { reads: reads.reduce((n, r) => n + r.calls, 0), all: rows.filter((r) => !/pg_stat_statements/.test(r.query)).reduce((n, r) => n + r.calls, 0) }
  }

  it(`a rollout step reaches ${N} watchers of the other replica with a read per replica, not per watcher`, async () => {
    await run(a, "addconf -name fan -layer code:v1")
    const watchers: Array<JsonLines> = []
    for (let i = 0; i < N; i++) {
      const c = await connectClient(b.port, "deploy-agent", { privateKeyPath: b.agent.privatePath })
      c.on("error", () => undefined)
      clients.push(c)
      watchers.push(await jsonLinesExec(c, `watch -name fan -host h${String(i).padStart(2, "0")} -version 1`))
    }
    const pings = setInterval(() => watchers.forEach((w) => w.send({ type: "ping" })), 500)
    try {
      await Promise.all(watchers.map((w) => w.next((l) => l.type === "state" && l.hash === hash.v1)))
      await query(url, "SELECT pg_stat_statements_reset()")

      // Started on A: B's watchers learn it by NOTIFY, maybe before B reloads its copy of the rollout.
      await run(a, "rollout -name fan -component code -version v2 -waves 100% -soak 1h")
      await Promise.all(watchers.map((w) => w.next((l) => l.type === "state" && l.hash === hash.v2)))
      const started = await documentReads()
      // Aborted on A: everyone is served the current state again (the read of the state, shared too).
      await run(a, "rollout -name fan -abort")
      await Promise.all(watchers.map((w) => w.next((l) => l.type === "state" && l.hash === hash.v1, 2)))
      const aborted = await documentReads()
      console.log(`fan-out: ${N} watchers, rollout start + abort: ${started.reads} + ${aborted.reads - started.reads} document reads ` +
        `(${aborted.all} statements in all, pings and heartbeats included)`)
      // Before the fan-out each watcher read for itself: of the statements counted, 1 per watcher at the
      // start and 2 at the abort (156 with 50 watchers); now 10 in all.
      expect(aborted.reads).toBeLessThan(N / 2)
      expect(watchers.every((w) => w.lines.filter((l) => l.type === "deleted").length === 0)).toBe(true)
    } finally {
      clearInterval(pings)
    }
  }, 120_000)

  it("rollout started on both replicas at once: one starts it, the other is told a rollout is in progress", async () => {
    await run(a, "addconf -name race -layer code:v1")
    const from = await currentHash(a, "race")
    // A host that never reports: each rollout waits for it, live until aborted.
    const c = await connectClient(a.port, "deploy-agent", { privateKeyPath: a.agent.privatePath })
    c.on("error", () => undefined)
    clients.push(c)
    const w = await jsonLinesExec(c, "watch -name race -host r1 -version 1")
    const pings = setInterval(() => w.send({ type: "ping" }), 500)
    await w.next((l) => l.type === "state")
    for (let round = 0; round < 5; round++) {
      const outs = await Promise.all([a, b].map((r) => exec(r, `rollout -name race -component code -version v2 -waves 100% -soak 1h`)))
      const won = outs.filter((o) => o.code === 0)
      const lost = outs.filter((o) => o.code !== 0)
      expect(won, JSON.stringify(outs)).toHaveLength(1)
      expect(lost[0]!.output).toMatch(/^configuration "race" has a rollout to [0-9a-f]{64} in progress; see rollout -name race -status, or end it with -abort\n$/)
      expect(await run(b, "rollout -name race -abort")).toContain("aborted")
    }
    clearInterval(pings)
    expect(await currentHash(b, "race")).toBe(from)
  }, 120_000)
})
