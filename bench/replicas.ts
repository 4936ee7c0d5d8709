// Replicas' combined agent capacity against one registry, in the same run, both on one PostgreSQL
// (docs/scale-out.md): agent polls served per second (connect as deploy-agent + read
// /configs/<name>.json over SFTP, load.ts agent-poll) by one replica, then by three replicas sharing the
// database and the host key, the same total concurrency spread over them. On a machine with fewer cores
// than replicas the ratio shows the cost of the split, not a gain: read it with the core count.
//   node --import tsx bench/replicas.ts [-db postgres://user@host:port/emptydb] [-runs 3] [-window 5s] [-pollc 24] [-procs 3]
// (without -db: a private PostgreSQL from test/support/postgresServer.ts)
import { readFileSync } from "node:fs"
import { tinyTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { environment, row } from "./lib/report.js"
import { summarize } from "./lib/stats.js"
import { addVersion, run } from "../test/agent/operator.js"
import { startPostgres } from "../test/support/postgresServer.js"
import { startRegistry, type TestRegistry } from "../test/support/registry.js"
import { startSibling } from "../test/support/replicas.js"
import { mergeLoad, runLoadProcs, type LoadResult } from "./load.js"

const pollsOn = (regs: ReadonlyArray<TestRegistry>, concurrency: number, procs: number, durationMs: number): Promise<LoadResult> =>
  Promise.all(
    regs.map((r) =>
      runLoadProcs({
        target: { host: "127.0.0.1", port: r.port, username: "deploy-agent", privateKey: readFileSync(r.agent.privatePath), keyPath: r.agent.privatePath, fingerprint: r.fingerprint },
        mode: "agent-poll", path: "/configs/bench.json", validateDocument: true,
        concurrency: Math.max(1, Math.round(concurrency / regs.length)), durationMs,
        procs: Math.max(1, Math.round(procs / regs.length))
      })
    )
  ).then(mergeLoad)

export const replicas: Bench = async (argv) => {
  const f = parseFlags(argv, ["runs", "window", "pollc", "procs", "db"])
  const given = f.str("db", "")
  const runs = f.int("runs", 3)
  const windowMs = f.duration("window", "5s")
  const conc = f.int("pollc", 24)
  const procs = f.int("procs", 3)
  const started = Date.now()
  const cleanup = new Cleanup()
  try {
    let url = given
    if (url === "") {
      const pg = await startPostgres()
      cleanup.add(() => pg.stop())
      url = await pg.createDatabase()
    }
    // One database, three replicas; "one" polls the first only, "three" all of them.
    const first = await startRegistry({ extraArgs: ["-db", url] })
    cleanup.add(() => first.stop("SIGKILL"))
    const all = [first]
    for (let i = 1; i < 3; i++) {
      const r = await startSibling(first, ["-db", url])
      cleanup.add(() => r.stop("SIGKILL"))
      all.push(r)
    }
    const layer = await tinyTarGz("bench", "bench")
    await addVersion(first, "code", "v1", readFileSync(layer.path))
    await run(first, "addconf -name bench -layer code:v1")
    const one = [first]
    const three = all
    const rps: Record<"one" | "three", Array<number>> = { one: [], three: [] }
    for (let i = 0; i < runs; i++) {
      // Interleaved, so a change of the machine's load hits both alike.
      for (const [k, regs] of [["one", one], ["three", three]] as const) {
        const r = await pollsOn(regs, conc, procs, windowMs)
        log(`replicas: ${k}: ${r.rps.toFixed(0)} polls/s (p50 ${r.p50.toFixed(0)} ms, ${r.errors} errors)`)
        rps[k].push(r.rps)
      }
    }
    return {
      name: "replicas",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { runs, windowMs, pollConcurrency: conc, procs },
      rows: [row({ metric: "agent polls served, 3 replicas together", unit: "/s", referenceName: "1 replica", reference: summarize(rps.one), ours: summarize(rps.three) })]
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, replicas)
