// Benchmark: N watching agents on one registry (issue 17). An ssh2 load generator in this process holds N
// real authenticated `deploy-agent` connections, each with a `watch` exec open and pinging every 15 s as
// the agent does. Measured: the registry's idle CPU (% of one core over -idle) and RSS with N watchers;
// fan-out, the time from `changeconf` returning until every watcher received the new state; and with
// -restart, a registry restart (SIGTERM, start on the same port and data) until every watcher is back
// (reconnect after a random 0–30 s, as the agent; -spread), with an operator command timed throughout.
// Targets at 5,000 watchers: idle CPU < 5%, RSS < 1 GiB, fan-out < 2 s, all back < 60 s, commands < 1 s.
//   node --import tsx bench/watchers.ts [-n 1000] [-idle 10s] [-c 20] [-restart] [-spread 30s] [-pin]
import { execFileSync, spawn } from "node:child_process"
import { closeSync, openSync, readFileSync } from "node:fs"
import * as path from "node:path"
import type { Client, ClientChannel } from "ssh2"
import { tinyTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { closeClient, execOk, openClient, type Target } from "./load.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { cpuMs, readMem, run, stopChild, waitFor } from "./lib/proc.js"
import { addVersionViaSftp, sshExec, startRegistry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { percentile, summarize } from "./lib/stats.js"

interface Watcher {
  client?: Client
  channel?: ClientChannel
  /** When the latest state line with `want` arrived (performance.now()). */
  gotAt?: number
  lastHash?: string
  up: boolean
}

export const watchers: Bench = async (argv) => {
  const f = parseFlags(argv, ["n", "idle", "c", "cipher", "spread"], ["restart", "pin"])
  const n = f.int("n", 1000)
  const idleMs = f.duration("idle", "10s")
  const concurrency = f.int("c", 20)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const restart = f.bool("restart")
  const spreadMs = f.duration("spread", "30s") // the agent's default -reconnect
  // -pin: the registry on CPU 0, this load generator (and the operator's ssh) on CPU 1, so the figures
  // are the registry's and not two programs fighting for one core (agents are other machines).
  const pin = (p: number, cpu: number) => {
    if (f.bool("pin")) execFileSync("taskset", ["-a", "-pc", String(cpu), String(p)], { stdio: "ignore" })
  }
  pin(process.pid, 1)
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    // Agents may hold 3/4 of -max-conns; all come from 127.0.0.1 here.
    const limits = ["-max-conns", String(Math.ceil((n * 4) / 3) + 200), "-max-conns-per-source", String(Math.ceil((n * 4) / 3) + 200)]
    const reg = await startRegistry({ cipher, extraArgs: limits })
    cleanup.add(() => reg.stop())
    let pid = reg.pid
    pin(pid, 0)
    const v1 = await tinyTarGz("watch-v1", "v1\n")
    const v2 = await tinyTarGz("watch-v2", "v2\n")
    await addVersionViaSftp(reg, v1.path, v1.sha256, "w", "v1")
    await addVersionViaSftp(reg, v2.path, v2.sha256, "w", "v2")
    await sshExec(reg, "addconf -name w -layer w:v1")

    const agentTarget: Target = { host: "127.0.0.1", port: reg.port, username: "deploy-agent", privateKey: readFileSync(reg.agent.privatePath), fingerprint: reg.fingerprint, cipher }
    const opTarget: Target = { ...agentTarget, username: "operator", privateKey: readFileSync(reg.operator.privatePath) }
    const ws: Array<Watcher> = Array.from({ length: n }, () => ({ up: false }))

    const open = async (w: Watcher, i: number) => {
      if (w.client) closeClient(w.client)
      const c = await openClient(agentTarget)
      c.on("error", () => undefined)
      const ch = await new Promise<ClientChannel>((res, rej) => c.exec(`watch -name w -host bench-${i} -version 0.1.0`, (e, x) => (e ? rej(e) : res(x))))
      w.client = c
      w.channel = ch
      let buf = ""
      await new Promise<void>((resolve) => {
        ch.on("data", (b: Buffer) => {
          buf += b.toString()
          let nl: number
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = JSON.parse(buf.slice(0, nl)) as { type: string; hash?: string }
            buf = buf.slice(nl + 1)
            if (line.type === "state") {
              w.lastHash = line.hash!
              w.gotAt = performance.now()
              w.up = true
              resolve()
            }
          }
        })
        ch.once("close", () => {
          w.up = false
          resolve()
        })
      })
    }
    const openRetrying = async (i: number) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await open(ws[i]!, i)
        } catch (e) {
          if (attempt > 60) throw e
          await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000))
        }
      }
    }
    /** The first connect: `concurrency` at a time. */
    const openAll = async (indices: Array<number>) => {
      let next = 0
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < indices.length) await openRetrying(indices[next++]!)
        })
      )
    }
    /** After a restart, as agents do: each on its own after a random delay up to `spreadMs`. */
    const reconnectAll = (spreadMs: number) =>
      Promise.all(ws.map(async (_, i) => {
        await new Promise((r) => setTimeout(r, Math.random() * spreadMs))
        await openRetrying(i)
      }))
    const pinger = setInterval(() => {
      for (const w of ws) if (w.up && w.channel?.writable) w.channel.write('{"type":"ping"}\n')
    }, 15_000) // the agent's default -ping
    cleanup.add(async () => {
      clearInterval(pinger)
      for (const w of ws) if (w.client) closeClient(w.client)
    })

    const t0 = performance.now()
    await openAll(ws.map((_, i) => i))
    log(`  ${n} watchers connected in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    // Idle: nothing but pings.
    await new Promise((r) => setTimeout(r, 2000))
    const cpu0 = cpuMs(pid)
    const w0 = performance.now()
    await new Promise((r) => setTimeout(r, idleMs))
    const idlePct = ((cpuMs(pid) - cpu0) / (performance.now() - w0)) * 100
    const rssMiB = (readMem(pid)?.rssKiB ?? NaN) / 1024
    rows.push(row({ metric: `${n} watchers: registry idle CPU`, unit: "% of a core", ours: summarize([idlePct]), note: `over ${idleMs / 1000} s of pings only (target < 5% at 5,000)` }))
    rows.push(row({ metric: `${n} watchers: registry RSS`, unit: "MiB", ours: summarize([rssMiB]), note: "target < 1 GiB at 5,000" }))

    // Fan-out: changeconf (on a held operator connection) → every watcher has the new hash.
    const op = await openClient(opTarget)
    cleanup.add(async () => closeClient(op))
    const fanouts: number[] = []
    for (const [k, version] of ["v2", "v1", "v2", "v1", "v2"].entries()) {
      for (const w of ws) w.gotAt = undefined
      await execOk(op, `changeconf -name w -component w -version ${version}`)
      const committed = performance.now()
      const want = /Hash:\t([0-9a-f]{64})/.exec(await execOk(op, "showconf -name w -v"))![1]!
      await waitFor("every watcher to get the change", () => ws.every((w) => w.lastHash === want), 60_000, 5)
      const last = Math.max(...ws.map((w) => w.gotAt ?? Infinity))
      fanouts.push(last - committed)
      log(`  change ${k + 1}: all ${n} watchers had it ${(last - committed).toFixed(0)} ms after changeconf returned`)
    }
    const fs = summarize(fanouts)
    rows.push(row({ metric: `${n} watchers: fan-out of one change`, unit: "ms", ours: fs, note: `changeconf returning → the last watcher's event; ${fanouts.length} changes (target < 2 s at 5,000)` }))

    if (restart) {
      // The registry restarts on the same port and data; watchers reconnect after a random 0–10 s.
      closeClient(op)
      const logFile = path.join(path.dirname(reg.dir), "registry.log")
      const argvOf = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((x) => x !== "")
      const child0 = { pid }
      const down = performance.now()
      process.kill(child0.pid, "SIGTERM")
      await waitFor("the registry to stop", () => !readMem(child0.pid), 30_000)
      log(`  registry stopped in ${(performance.now() - down).toFixed(0)} ms`)
      const args = argvOf.slice(1).map((a) => (a === "127.0.0.1:0" ? `127.0.0.1:${reg.port}` : a))
      const fd = openSync(logFile, "a")
      const child = spawn(argvOf[0]!, args, { stdio: ["ignore", fd, fd] })
      closeSync(fd)
      cleanup.add(async () => void (await stopChild(child)))
      pid = child.pid!
      pin(pid, 0)
      const reconnect = reconnectAll(spreadMs)
      const cmdMs: number[] = []
      let done = false
      void reconnect.then(() => (done = true))
      while (!done) {
        // OpenSSH in its own process: this process is busy being 1,000 agents reconnecting.
        const a = performance.now()
        const r = await run("ssh", ["-p", String(reg.port), ...reg.clientOpts("operator"), "operator@127.0.0.1", "configurations"])
        if (r.code === 0) cmdMs.push(performance.now() - a)
        await new Promise((r) => setTimeout(r, 250))
      }
      const back = performance.now() - down
      rows.push(row({ metric: `${n} watchers: all back after a restart`, unit: "s", ours: summarize([back / 1000]), note: `SIGTERM → last watcher's first state (reconnects spread over 0–${spreadMs / 1000} s; target < 60 s at 5,000)` }))
      if (cmdMs.length > 0) {
        rows.push(row({ metric: `${n} watchers: operator command during the reconnects`, unit: "ms", ours: summarize(cmdMs), note: `OpenSSH ssh … configurations (its own process: connect + command), p99 ${percentile(cmdMs, 99).toFixed(0)} ms over ${cmdMs.length} (target < 1 s)` }))
      }
    }
    return {
      name: "watchers",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { n, idleMs, concurrency, cipher, restart },
      rows,
      extra: { fanoutsMs: fanouts }
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, watchers)
