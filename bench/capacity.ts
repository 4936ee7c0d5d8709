// Benchmark 5, registry capacity, against OpenSSH sshd measured in the same run:
//  - operator commands: `deployctl configurations` in a loop vs OpenSSH `ssh ... configurations` (same registry)
//  - exec round trips on one connection (load.ts exec): registry `configurations` vs sshd `true`
//  - handshakes/s (new connection + exec) with the server's CPU ms per handshake
//  - agents served per second (connect as deploy-agent + read /configs/<name>.json over SFTP) at full load
// The load runs in separate node processes (-procs) so the client is not one saturated event loop.
//   node --import tsx bench/capacity.ts [-runs 5] [-window 5s] [-c 16] [-pollc 32] [-procs 2] [-ctlruns 20]
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { mkdir, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { tinyTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { sshRun } from "./lib/openssh.js"
import { cpuMs, readMem, runOk, watchMemory } from "./lib/proc.js"
import { addVersionViaSftp, agentArgs, deployctl, dist, haveProgram, requirePrograms, sshExec, startRegistry, type Registry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { startSshd } from "./lib/sshd.js"
import { interleave, mapStat, summarize, type Stat } from "./lib/stats.js"
import { tempDir } from "../test/support/keys.js"
import { agentPoll, formatLoad, runLoadProcs, type LoadOptions, type LoadResult, type Target } from "./load.js"

interface Window {
  readonly load: LoadResult
  /** Server CPU ms used during the window (with reaped children for sshd). */
  readonly serverCpuMs: number
  readonly serverPeakRssMiB: number
}

/** Milliseconds from spawning the registry on a fresh directory (host key and database made) to its `listening` line. */
const registryStart = async (reg: Registry, scratch: string, i: number): Promise<number> => {
  const dir = path.join(scratch, `registry-${i}`)
  await mkdir(dir)
  const keys = path.join(scratch, "keys")
  await writeFile(keys, reg.operator.publicLine + "\n")
  const t0 = performance.now()
  const child = spawn(process.execPath, [dist.registry, "-addr", "127.0.0.1:0", "-dir", dir, "-opauth", keys, "-srvauth", keys], { stdio: ["ignore", "pipe", "pipe"] })
  try {
    return await new Promise<number>((resolve, reject) => {
      let out = ""
      const onData = (d: Buffer) => {
        out += d
        if (/listening on/.test(out)) resolve(performance.now() - t0)
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      child.once("exit", (code) => reject(new Error(`registry exited ${code} at start: ${out.trim()}`)))
    })
  } finally {
    child.kill()
    await rm(dir, { recursive: true, force: true })
  }
}

export const capacity: Bench = async (argv) => {
  const f = parseFlags(argv, ["runs", "window", "c", "pollc", "procs", "ctlruns", "cipher"])
  const runs = f.int("runs", 5)
  const windowMs = f.duration("window", "5s")
  const hsConc = f.int("c", 16)
  const pollConc = f.int("pollc", 32)
  const procs = f.int("procs", 2)
  const ctlRuns = f.int("ctlruns", 20)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  requirePrograms("registry")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  const extra: Record<string, unknown> = {}
  try {
    const sshd = await startSshd({ cipher })
    cleanup.add(() => sshd.stop())
    const reg = await startRegistry({ cipher })
    cleanup.add(() => reg.stop())
    const v1 = await tinyTarGz("capacity-v1", "v1\n")
    await addVersionViaSftp(reg, v1.path, v1.sha256, "bench", "v1")
    await sshExec(reg, "addconf -name bench -layer bench:v1")

    const regOp: Target = {
      host: "127.0.0.1", port: reg.port, username: "operator", privateKey: readFileSync(reg.operator.privatePath),
      keyPath: reg.operator.privatePath, fingerprint: reg.fingerprint, cipher
    }
    const regAgent: Target = { ...regOp, username: "deploy-agent", privateKey: readFileSync(reg.agent.privatePath), keyPath: reg.agent.privatePath }
    const sshdT: Target = {
      host: "127.0.0.1", port: sshd.port, username: sshd.user, privateKey: readFileSync(sshd.clientKey.privatePath),
      keyPath: sshd.clientKey.privatePath, fingerprint: sshd.hostFingerprint, cipher
    }
    // The reference agent reads a file of the same size from sshd over SFTP.
    const doc = await agentPoll(regAgent, "/configs/bench.json")
    const sshdDoc = path.join(sshd.dir, "bench.json")
    await writeFile(sshdDoc, doc)

    const window = async (pid: number, withChildren: boolean, o: LoadOptions): Promise<Window> => {
      const mem = watchMemory(pid, 100)
      const c0 = cpuMs(pid, withChildren)
      // exec measures round trips on ONE connection: one process.
      const load = await runLoadProcs({ ...o, procs: o.mode === "exec" ? 1 : procs })
      const serverCpuMs = cpuMs(pid, withChildren) - c0
      const m = mem.stop()
      log(`  ${pid === reg.pid ? "registry" : "sshd"} ${formatLoad(load)}, server CPU ${(serverCpuMs / Math.max(1, load.ok)).toFixed(2)} ms/req`)
      if (load.errors > 0) log(`    errors: ${load.errorSamples.join(" | ")}`)
      return { load, serverCpuMs, serverPeakRssMiB: m.peakKiB / 1024 }
    }
    const series = async (variants: Record<string, () => Promise<Window>>) => {
      const out: Record<string, Window[]> = {}
      for (let i = 0; i < runs; i++) {
        for (const [k, fn] of Object.entries(variants)) (out[k] ??= []).push(await fn())
      }
      return out
    }
    const stat = (ws: Window[], f: (w: Window) => number): Stat => summarize(ws.map(f))

    // 1. Operator commands as whole client processes.
    if (haveProgram("ctl")) {
      log(`capacity: deployctl configurations vs ssh configurations, ${ctlRuns} each`)
      const scratch = await tempDir("bench-startup-")
      cleanup.add(() => rm(scratch, { recursive: true, force: true }))
      let n = 0
      const st = await interleave(ctlRuns, {
        ssh: async () => {
          const r = await sshRun({ port: reg.port, user: "operator", opts: reg.clientOpts("operator") }, "configurations")
          if (r.code !== 0) throw new Error(`ssh configurations failed: ${r.stderr.trim()}`)
          return r.ms
        },
        // Node's own start-up: the floor under any command-line program of ours.
        node: async () => (await runOk(process.execPath, ["-e", "0"])).ms,
        deployctl: async () => {
          const r = await deployctl(reg, ["configurations"])
          if (r.code !== 0) throw new Error(`deployctl configurations failed: ${(r.stdout + r.stderr).trim()}`)
          return r.ms
        },
        // The other two programs' start-up, for the same floor.
        agent: async () => {
          const dir = path.join(scratch, `agent-${n++}`)
          await mkdir(dir)
          const r = await runOk(process.execPath, agentArgs(reg, "bench", dir, ["-once", "-script", ""]))
          await rm(dir, { recursive: true, force: true })
          return r.ms
        },
        registry: () => registryStart(reg, scratch, n++)
      })
      rows.push(row({
        metric: "deployctl configurations, sequential", unit: "cmd/s", referenceName: "OpenSSH ssh, same registry",
        reference: mapStat(st["ssh"], (ms) => 1000 / ms), ours: mapStat(st["deployctl"], (ms) => 1000 / ms),
        note: `per command: deployctl ${st["deployctl"].median.toFixed(0)} ms, ssh ${st["ssh"].median.toFixed(0)} ms (median; process start included)`
      }))
      rows.push(row({
        metric: "deployctl configurations, one round trip", unit: "ms", referenceName: "node -e 0 (Node's start-up)",
        reference: st["node"], ours: st["deployctl"], target: { kind: "ratio<=", value: 3 }
      }))
      rows.push(row({
        metric: "deploy-agent -once, a one-file layer", unit: "ms", referenceName: "node -e 0 (Node's start-up)", reference: st["node"], ours: st["agent"],
        note: "start, connect, document, download + verify, unpack, state, with their fsyncs: several round trips, not one"
      }))
      rows.push(row({
        metric: "registry start, fresh directory, to `listening`", unit: "ms", referenceName: "node -e 0 (Node's start-up)", reference: st["node"], ours: st["registry"],
        note: "includes making the host key and the database"
      }))
    }

    // 2. Exec round trips on one connection.
    log(`capacity: exec round trips on one connection (${runs} × ${windowMs} ms)`)
    const exec = await series({
      sshd: () => window(sshd.pid, true, { target: sshdT, mode: "exec", command: "true", concurrency: 1, durationMs: windowMs }),
      registry: () => window(reg.pid, false, { target: regOp, mode: "exec", command: "configurations", concurrency: 1, durationMs: windowMs })
    })
    const perConn = (w: Window) => w.load.rps
    rows.push(row({
      metric: "exec round trips, one connection", unit: "req/s", referenceName: "sshd exec `true`",
      reference: stat(exec["sshd"]!, perConn), ours: stat(exec["registry"]!, perConn),
      note: `registry p50 ${stat(exec["registry"]!, (w) => w.load.p50).median.toFixed(2)} ms, p99 ${stat(exec["registry"]!, (w) => w.load.p99).median.toFixed(2)} ms`
    }))

    // 3. Handshakes: a new connection and one exec each.
    log(`capacity: handshakes, c=${hsConc} over ${procs} processes (${runs} × ${windowMs} ms)`)
    const hs = await series({
      sshd: () => window(sshd.pid, true, { target: sshdT, mode: "handshake", command: "true", concurrency: hsConc, durationMs: windowMs }),
      registry: () => window(reg.pid, false, { target: regOp, mode: "handshake", command: "configurations", concurrency: hsConc, durationMs: windowMs })
    })
    const cpuPer = (w: Window) => w.serverCpuMs / Math.max(1, w.load.ok)
    rows.push(row({
      metric: "handshakes (connect + exec)", unit: "/s", referenceName: "sshd", reference: stat(hs["sshd"]!, (w) => w.load.rps),
      ours: stat(hs["registry"]!, (w) => w.load.rps), target: { kind: "ours>=", value: 250 },
      note: `client CPU ${stat(hs["registry"]!, (w) => w.load.clientCpuMs / Math.max(1, w.load.ok)).median.toFixed(2)} ms per handshake; ` +
        `errors ${hs["registry"]!.reduce((a, w) => a + w.load.errors, 0)}`
    }))
    rows.push(row({
      metric: "server CPU per handshake", unit: "ms", referenceName: "sshd (with children)", reference: stat(hs["sshd"]!, cpuPer),
      ours: stat(hs["registry"]!, cpuPer), target: { kind: "ours<=", value: 2 }
    }))

    // 4. Polling agents served per second.
    log(`capacity: agent polls, c=${pollConc} over ${procs} processes (${runs} × ${windowMs} ms)`)
    const polls = await series({
      sshd: () => window(sshd.pid, true, { target: sshdT, mode: "agent-poll", path: sshdDoc, concurrency: pollConc, durationMs: windowMs }),
      registry: () => window(reg.pid, false, { target: regAgent, mode: "agent-poll", path: "/configs/bench.json", validateDocument: true, concurrency: pollConc, durationMs: windowMs })
    })
    const r = polls["registry"]!
    rows.push(row({
      metric: "agent polls served", unit: "/s", referenceName: "sshd sftp read", reference: stat(polls["sshd"]!, (w) => w.load.rps),
      ours: stat(r, (w) => w.load.rps),
      note: `p50 ${stat(r, (w) => w.load.p50).median.toFixed(1)} ms, p99 ${stat(r, (w) => w.load.p99).median.toFixed(1)} ms; ` +
        `registry CPU ${stat(r, (w) => (100 * w.serverCpuMs) / w.load.elapsedMs).median.toFixed(0)}% of a core, ` +
        `${stat(r, cpuPer).median.toFixed(2)} ms per poll; peak RSS ${stat(r, (w) => w.serverPeakRssMiB).max.toFixed(0)} MiB; ` +
        `errors ${r.reduce((a, w) => a + w.load.errors, 0)}`
    }))
    rows.push(row({ metric: "agent poll latency p50", unit: "ms", referenceName: "sshd", reference: stat(polls["sshd"]!, (w) => w.load.p50), ours: stat(r, (w) => w.load.p50) }))
    rows.push(row({ metric: "agent poll latency p99", unit: "ms", referenceName: "sshd", reference: stat(polls["sshd"]!, (w) => w.load.p99), ours: stat(r, (w) => w.load.p99) }))
    rows.push(row({ metric: "registry RSS after load", unit: "MiB", ours: summarize([(readMem(reg.pid)?.rssKiB ?? NaN) / 1024]) }))
    const strip = (ws: Record<string, Window[]>) =>
      Object.fromEntries(Object.entries(ws).map(([k, v]) => [k, v.map((w) => ({ ...w, load: { ...w.load, latencies: [] } }))]))
    extra["exec"] = strip(exec)
    extra["handshake"] = strip(hs)
    extra["agentPoll"] = strip(polls)
    return {
      name: "capacity",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { runs, windowMs, handshakeConcurrency: hsConc, pollConcurrency: pollConc, procs, ctlRuns, cipher },
      rows,
      extra
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, capacity)
