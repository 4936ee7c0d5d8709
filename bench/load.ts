// Load generator over ssh2, as a library and as a CLI.
//   exec:        one connection, `concurrency` exec loops on it (round trips of one command)
//   handshake:   a new connection + one exec each time, `concurrency` at once
//   agent-poll:  connect as deploy-agent, read /configs/<name>.json over SFTP, disconnect
// CLI: node --import tsx bench/load.ts -addr 127.0.0.1:PORT -fp SHA256:... -key KEY -mode handshake \
//        [-user operator] [-command configurations] [-path /configs/x.json] [-c 8] [-duration 10s] \
//        [-interval 1s] [-cipher aes128-gcm@openssh.com] [-procs 1] [-json]
import { spawn } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import * as path from "node:path"
import * as net from "node:net"
import { fileURLToPath } from "node:url"
import ssh2 from "ssh2"
import type { Client, ConnectConfig, CipherAlgorithm } from "ssh2"
import { fingerprint } from "../src/ssh/Fingerprint.js"
import { parseFlags, UsageError } from "./lib/flags.js"
import { runCli } from "./lib/main.js"
import { percentile } from "./lib/stats.js"

export type Mode = "exec" | "handshake" | "agent-poll"

export interface Target {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly privateKey: Buffer
  /** Where privateKey came from: needed to run the load from several processes. */
  readonly keyPath?: string
  /** Pinned host key (`SHA256:...`); absent = accept any (only for references we started ourselves). */
  readonly fingerprint?: string
  readonly cipher?: string
}

const config = (t: Target, sock: net.Socket): ConnectConfig => ({
  sock,
  username: t.username,
  privateKey: t.privateKey,
  readyTimeout: 30_000,
  hostVerifier: (key: Buffer) => t.fingerprint === undefined || fingerprint(key).toLowerCase() === t.fingerprint.toLowerCase(),
  ...(t.cipher ? { algorithms: { cipher: [t.cipher as CipherAlgorithm] } } : {})
})

/** Opens an authenticated connection with TCP_NODELAY set (SSH2.md pitfall 1). */
export const openClient = (t: Target): Promise<Client> =>
  new Promise((resolve, reject) => {
    const sock = net.connect({ host: t.host, port: t.port })
    sock.setNoDelay(true)
    const c = new ssh2.Client()
    c.once("ready", () => resolve(c))
    // `on`, not `once`: ssh2 may emit a second error (e.g. "lost before handshake") after the first.
    c.on("error", (e) => {
      sock.destroy()
      reject(e)
    })
    c.connect(config(t, sock))
  })

export const closeClient = (c: Client): void => {
  c.removeAllListeners("error")
  c.on("error", () => undefined)
  c.end()
}

/** Runs one command; resolves with its exit code and stdout. */
export const execOn = (c: Client, command: string): Promise<{ code: number | null; stdout: string }> =>
  new Promise((resolve, reject) => {
    c.exec(command, (err, stream) => {
      if (err) return reject(err)
      let stdout = ""
      let code: number | null = null
      stream.on("data", (d: Buffer) => (stdout += d.toString()))
      stream.stderr.on("data", () => undefined)
      stream.once("exit", (x: number | null) => (code = x))
      stream.once("close", () => resolve({ code, stdout }))
    })
  })

export const execOk = async (c: Client, command: string): Promise<string> => {
  const r = await execOn(c, command)
  if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.stdout.trim().split("\n")[0] ?? ""}`)
  return r.stdout
}

/** One operation's limit: a connection the server dropped without ssh2 noticing must count as an error, not hang the run. */
const OP_DEADLINE_MS = 20_000

const withDeadline = <A>(what: string, p: Promise<A>, onTimeout: () => void): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout()
      reject(new Error(`${what}: no answer within ${OP_DEADLINE_MS / 1000} s`))
    }, OP_DEADLINE_MS)
  })
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer))
}

/** New connection, one exec, close. */
export const handshakeExec = async (t: Target, command: string): Promise<void> => {
  const c = await openClient(t)
  try {
    await withDeadline(command, execOk(c, command), () => c.destroy())
  } finally {
    closeClient(c)
  }
}

/** What a polling agent does: connect, read one file over SFTP, close. */
export const agentPoll = async (t: Target, path: string): Promise<Buffer> => {
  const c = await openClient(t)
  try {
    return await withDeadline(path, new Promise<Buffer>((resolve, reject) => {
      c.sftp((err, sftp) => {
        if (err) return reject(err)
        sftp.readFile(path, (e, data) => {
          sftp.end()
          if (e) reject(e)
          else resolve(data)
        })
      })
    }), () => c.destroy())
  } finally {
    closeClient(c)
  }
}

/** A configuration document as the registry serves it must parse and carry a 64-hex Hash. */
export const checkDocument = (data: Buffer): string => {
  const doc = JSON.parse(data.toString("utf8")) as { Hash?: unknown }
  if (typeof doc.Hash !== "string" || !/^[0-9a-f]{64}$/.test(doc.Hash)) throw new Error("document without a valid Hash")
  return doc.Hash
}

export interface LoadOptions {
  readonly target: Target
  readonly mode: Mode
  /** exec / handshake: the command (default `configurations`). */
  readonly command?: string
  /** agent-poll: the file to read. */
  readonly path?: string
  /** agent-poll: worker w reads paths[w % paths.length] instead (several configurations). */
  readonly paths?: ReadonlyArray<string>
  /** agent-poll: check that the file is a configuration document. */
  readonly validateDocument?: boolean
  readonly concurrency: number
  readonly durationMs: number
  /** When set, each worker starts one request per interval (a polling fleet) instead of back to back. */
  readonly intervalMs?: number
}

export interface LoadResult {
  readonly mode: Mode
  readonly concurrency: number
  readonly ok: number
  readonly errors: number
  readonly errorSamples: ReadonlyArray<string>
  readonly elapsedMs: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  /** CPU time the load generator itself used (all its processes): shows when the client is the bottleneck. */
  readonly clientCpuMs: number
  /** Latencies in ms (for merging results of several processes). */
  readonly latencies: ReadonlyArray<number>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export const runLoad = async (o: LoadOptions): Promise<LoadResult> => {
  const command = o.command ?? "configurations"
  const latencies: number[] = []
  const errorSamples: string[] = []
  let errors = 0
  const shared = o.mode === "exec" ? await openClient(o.target) : undefined
  const one = async (w: number): Promise<void> => {
    switch (o.mode) {
      case "exec":
        await withDeadline(command, execOk(shared!, command), () => shared!.destroy())
        return
      case "handshake":
        return handshakeExec(o.target, command)
      case "agent-poll": {
        const p = o.paths && o.paths.length > 0 ? o.paths[w % o.paths.length]! : (o.path ?? "/configs/bench.json")
        const data = await agentPoll(o.target, p)
        if (o.validateDocument) checkDocument(data)
        return
      }
    }
  }
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + o.durationMs
  const worker = async (w: number) => {
    // Spread a polling fleet's start over one interval, as real agents drift apart.
    if (o.intervalMs) await sleep((o.intervalMs * w) / o.concurrency)
    while (performance.now() < end) {
      const s = performance.now()
      try {
        await one(w)
        latencies.push(performance.now() - s)
      } catch (e) {
        errors++
        if (errorSamples.length < 10) errorSamples.push((e as Error).message)
      }
      if (o.intervalMs) {
        const wait = o.intervalMs - (performance.now() - s)
        if (wait > 0) await sleep(Math.min(wait, Math.max(0, end - performance.now())))
      }
    }
  }
  await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)))
  const elapsedMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  if (shared) closeClient(shared)
  return summarizeLoad(o.mode, o.concurrency, latencies, errors, errorSamples, elapsedMs, (cpu.user + cpu.system) / 1000)
}

const summarizeLoad = (
  mode: Mode, concurrency: number, latencies: number[], errors: number, errorSamples: string[], elapsedMs: number, clientCpuMs: number
): LoadResult => ({
  mode,
  concurrency,
  ok: latencies.length,
  errors,
  errorSamples,
  elapsedMs,
  rps: (latencies.length * 1000) / elapsedMs,
  p50: percentile(latencies, 50),
  p99: percentile(latencies, 99),
  max: latencies.length ? latencies.reduce((a, b) => Math.max(a, b), -Infinity) : NaN,
  clientCpuMs,
  latencies: latencies.map((x) => Math.round(x * 100) / 100)
})

/** Merges results of processes that ran side by side for the same duration. */
export const mergeLoad = (rs: ReadonlyArray<LoadResult>): LoadResult => {
  const lat = rs.flatMap((r) => r.latencies)
  const elapsed = Math.max(...rs.map((r) => r.elapsedMs))
  return summarizeLoad(
    rs[0]!.mode,
    rs.reduce((a, r) => a + r.concurrency, 0),
    lat,
    rs.reduce((a, r) => a + r.errors, 0),
    rs.flatMap((r) => r.errorSamples).slice(0, 10),
    elapsed,
    rs.reduce((a, r) => a + r.clientCpuMs, 0)
  )
}

/**
 * Runs the load from `procs` separate node processes (this file as CLI with -json), so the client side
 * is not capped by one event loop; returns the merged result.
 */
/**
 * This file bundled into plain JavaScript once per benchmark process, for the load workers: it spares each
 * worker tsx's start-up and transforms. (Workers that hung for good in a futex wait were Node 20's JWK export
 * deadlock in ssh2's key exchange, fixed in scripts/patch-deps.mjs; the per-operation limit above makes any
 * other hang an error instead of a stuck benchmark.)
 */
let workerScript: Promise<string> | undefined
const loadWorkerScript = (): Promise<string> =>
  (workerScript ??= (async () => {
    const self = fileURLToPath(import.meta.url)
    const out = path.join(path.dirname(self), "..", "node_modules", ".cache", "deploy-tools-bench", `load-${process.pid}.mjs`)
    const { build } = await import("esbuild")
    await build({ entryPoints: [self], bundle: true, platform: "node", format: "esm", packages: "external", outfile: out, logLevel: "silent" })
    process.once("exit", () => rmSync(out, { force: true }))
    return out
  })())

export const runLoadProcs = async (o: LoadOptions & { readonly procs: number }): Promise<LoadResult> => {
  if (o.procs <= 1) return runLoad(o)
  const self = await loadWorkerScript()
  const keyFile = o.target.keyPath
  if (!keyFile) throw new Error("runLoadProcs needs target.keyPath")
  const perProc = Math.max(1, Math.round(o.concurrency / o.procs))
  const args = [
    self, "-json",
    "-addr", `${o.target.host}:${o.target.port}`,
    "-user", o.target.username,
    "-key", keyFile,
    "-mode", o.mode,
    "-c", String(perProc),
    "-duration", `${o.durationMs}ms`,
    ...(o.target.fingerprint ? ["-fp", o.target.fingerprint] : []),
    ...(o.target.cipher ? ["-cipher", o.target.cipher] : []),
    ...(o.command ? ["-command", o.command] : []),
    ...(o.path ? ["-path", o.path] : []),
    ...(o.paths && o.paths.length > 0 ? ["-paths", o.paths.join(",")] : []),
    ...(o.validateDocument ? ["-validate"] : []),
    ...(o.intervalMs ? ["-interval", `${o.intervalMs}ms`] : [])
  ]
  const results = await Promise.all(
    Array.from({ length: o.procs }, () =>
      new Promise<LoadResult>((resolve, reject) => {
        const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
        let out = ""
        let err = ""
        // A worker whose event loop is stuck (the per-operation limit cannot fire then) is killed, not waited for.
        const stuck = setTimeout(() => child.kill("SIGKILL"), o.durationMs + 2 * OP_DEADLINE_MS)
        child.stdout.on("data", (d: Buffer) => (out += d.toString()))
        child.stderr.on("data", (d: Buffer) => (err += d.toString()))
        child.once("close", (code, signal) => {
          clearTimeout(stuck)
          if (signal === "SIGKILL") return reject(new Error(`load worker stuck: killed after ${(o.durationMs + 2 * OP_DEADLINE_MS) / 1000} s`))
          if (code !== 0) return reject(new Error(`load worker exited ${code}: ${err.trim()}`))
          try {
            resolve(JSON.parse(out) as LoadResult)
          } catch {
            reject(new Error(`load worker printed no result: ${err.trim()}`))
          }
        })
      })
    )
  )
  return mergeLoad(results)
}

export const formatLoad = (r: LoadResult): string =>
  `${r.mode} c=${r.concurrency}: ${r.rps.toFixed(1)} req/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ` +
  `max ${r.max.toFixed(1)} ms, client CPU ${(r.clientCpuMs / Math.max(1, r.ok)).toFixed(2)} ms/req, ok ${r.ok}, errors ${r.errors}${r.errorSamples.length ? ` (${r.errorSamples[0]})` : ""}`

const cli = async (argv: ReadonlyArray<string>): Promise<void> => {
  const f = parseFlags(argv, ["addr", "fp", "key", "user", "mode", "command", "path", "paths", "c", "duration", "interval", "cipher", "procs"], ["json", "validate"])
  const addr = f.str("addr", "")
  const m = /^(.+):(\d+)$/.exec(addr)
  if (!m) throw new UsageError("-addr HOST:PORT is required")
  const keyPath = f.str("key", "")
  if (!keyPath) throw new UsageError("-key PRIVATE_KEY_FILE is required")
  const mode = f.str("mode", "exec") as Mode
  if (!["exec", "handshake", "agent-poll"].includes(mode)) throw new UsageError("-mode is exec, handshake or agent-poll")
  const fp = f.str("fp", "")
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const interval = f.str("interval", "")
  const target: Target = {
    host: m[1]!,
    port: Number(m[2]),
    username: f.str("user", mode === "agent-poll" ? "deploy-agent" : "operator"),
    privateKey: readFileSync(keyPath),
    keyPath,
    ...(fp ? { fingerprint: fp } : {}),
    ...(cipher ? { cipher } : {})
  }
  const opts = {
    target,
    mode,
    command: f.str("command", "configurations"),
    path: f.str("path", "/configs/bench.json"),
    paths: f.str("paths", "").split(",").filter((x) => x !== ""),
    validateDocument: f.bool("validate"),
    concurrency: f.int("c", 1),
    durationMs: f.duration("duration", "10s"),
    procs: f.int("procs", 1),
    ...(interval ? { intervalMs: f.duration("interval", interval) } : {})
  }
  const r = await runLoadProcs(opts)
  if (f.bool("json")) process.stdout.write(JSON.stringify(r) + "\n")
  else process.stdout.write(formatLoad(r) + "\n")
}

runCli(import.meta.url, cli)
