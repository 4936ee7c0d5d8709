// Soak: a fleet of simulated agents (default 200) each polling its configuration every second (connect as
// deploy-agent, read /configs/<name>.json over SFTP, check the document) for 10 minutes, while an operator
// keeps changing the configurations. Errors must be 0; reports registry RSS at start and end, p50/p99 poll latency.
//   npm run soak -- [-duration 10m] [-agents 200] [-interval 1s] [-configs 4] [-change 1s] [-procs 2]
import { readFileSync } from "node:fs"
import { tinyTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { cpuMs, readMem, watchMemory } from "./lib/proc.js"
import { addVersionViaSftp, sshExec, startRegistry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { summarize } from "./lib/stats.js"
import { closeClient, execOk, formatLoad, openClient, runLoadProcs, type Target } from "./load.js"

export const soak: Bench = async (argv) => {
  const f = parseFlags(argv, ["duration", "agents", "interval", "configs", "change", "procs", "cipher"])
  const durationMs = f.duration("duration", "10m")
  const agents = f.int("agents", 200)
  const intervalMs = f.duration("interval", "1s")
  const configs = f.int("configs", 4)
  const changeMs = f.duration("change", "1s")
  const procs = f.int("procs", 2)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    const reg = await startRegistry({ cipher })
    cleanup.add(() => reg.stop())
    const v1 = await tinyTarGz("soak-v1", "v1\n")
    const v2 = await tinyTarGz("soak-v2", "v2\n")
    await addVersionViaSftp(reg, v1.path, v1.sha256, "soak", "v1")
    await addVersionViaSftp(reg, v2.path, v2.sha256, "soak", "v2")
    const names = Array.from({ length: configs }, (_, i) => `soak${i}`)
    for (const n of names) await sshExec(reg, `addconf -name ${n} -layer soak:v1`)

    const base: Target = {
      host: "127.0.0.1", port: reg.port, username: "operator", privateKey: readFileSync(reg.operator.privatePath),
      keyPath: reg.operator.privatePath, fingerprint: reg.fingerprint, cipher
    }
    const agentT: Target = { ...base, username: "deploy-agent", privateKey: readFileSync(reg.agent.privatePath), keyPath: reg.agent.privatePath }

    await new Promise((r) => setTimeout(r, 1000))
    const startKiB = readMem(reg.pid)?.rssKiB ?? NaN
    const mem = watchMemory(reg.pid, 1000)
    const rssSeries: number[] = []
    const rssTimer = setInterval(() => rssSeries.push((readMem(reg.pid)?.rssKiB ?? NaN) / 1024), 10_000)
    const c0 = cpuMs(reg.pid)
    log(`soak: ${agents} agents polling every ${intervalMs} ms for ${(durationMs / 1000).toFixed(0)} s; an operator changes a configuration every ${changeMs} ms`)

    // The operator: one connection, changeconf round robin over the configurations, toggling versions.
    let opChanges = 0
    let opErrors = 0
    const opErrorSamples: string[] = []
    let running = true
    const operator = (async () => {
      const c = await openClient(base)
      const version = new Map(names.map((n) => [n, "v1"]))
      try {
        for (let i = 0; running; i++) {
          const t = performance.now()
          const n = names[i % names.length]!
          const next = version.get(n) === "v1" ? "v2" : "v1"
          try {
            await execOk(c, `changeconf -name ${n} -component soak -version ${next}`)
            version.set(n, next)
            opChanges++
          } catch (e) {
            opErrors++
            if (opErrorSamples.length < 5) opErrorSamples.push((e as Error).message)
          }
          const wait = changeMs - (performance.now() - t)
          if (wait > 0 && running) await new Promise((r) => setTimeout(r, wait))
        }
      } finally {
        closeClient(c)
      }
    })()

    const load = await runLoadProcs({
      target: agentT, mode: "agent-poll", paths: names.map((n) => `/configs/${n}.json`), validateDocument: true,
      concurrency: agents, durationMs, intervalMs, procs
    })
    running = false
    await operator
    clearInterval(rssTimer)
    const used = cpuMs(reg.pid) - c0
    const m = mem.stop()
    const endKiB = readMem(reg.pid)?.rssKiB ?? NaN
    log(`soak: ${formatLoad(load)}`)
    if (load.errors) log(`soak: poll errors: ${load.errorSamples.join(" | ")}`)
    if (opErrors) log(`soak: operator errors: ${opErrorSamples.join(" | ")}`)

    const expected = (agents * durationMs) / intervalMs
    rows.push(row({ metric: "poll errors", unit: "count", ours: summarize([load.errors]), target: { kind: "ours<=", value: 0 }, note: load.errorSamples[0] }))
    rows.push(row({ metric: "operator changeconf errors", unit: "count", ours: summarize([opErrors]), target: { kind: "ours<=", value: 0 }, note: `${opChanges} changes made` }))
    rows.push(row({
      metric: "polls served", unit: "/s", ours: summarize([load.rps]),
      note: `${load.ok} polls, ${(100 * load.ok / expected).toFixed(0)}% of the ${expected.toFixed(0)} a perfect fleet would make`
    }))
    rows.push(row({ metric: "poll latency p50", unit: "ms", ours: summarize([load.p50]) }))
    rows.push(row({ metric: "poll latency p99", unit: "ms", ours: summarize([load.p99]), note: `max ${load.max.toFixed(0)} ms` }))
    rows.push(row({ metric: "registry RSS at start", unit: "MiB", ours: summarize([startKiB / 1024]) }))
    rows.push(row({ metric: "registry RSS at end", unit: "MiB", ours: summarize([endKiB / 1024]), note: `peak ${(m.peakKiB / 1024).toFixed(0)} MiB` }))
    rows.push(row({ metric: "registry CPU", unit: "% of a core", ours: summarize([(100 * used) / load.elapsedMs]), note: `${(used / Math.max(1, load.ok)).toFixed(2)} ms per poll` }))
    return {
      name: "soak",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { durationMs, agents, intervalMs, configs, changeMs, procs, cipher },
      rows,
      extra: { rssMiBEvery10s: rssSeries, load: { ...load, latencies: [] } }
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, soak)
