// What one upload costs the client's CPU, apart from start-up, the file and the check: `upload()`
// (src/ssh/SftpWrite.ts, the code deployctl sends with) of an in-memory stream to a registry, in this
// process, timed with process.cpuUsage() (this process: framing, copies, encryption, writes, GC). The
// registry's CPU for the same bytes comes from /proc. CPU per MiB is what to compare between builds on
// a loaded machine: unlike MB/s it barely moves with the load.
//   node --import tsx bench/sendcpu.ts [-size 64M] [-runs 5] [-cipher aes128-gcm@openssh.com]
import { Effect, Exit, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import type { SFTPWrapper } from "ssh2"
import { DEFAULT_IN_FLIGHT, openSftp, requestSize } from "../src/ssh/Sftp.js"
import { upload } from "../src/ssh/SftpWrite.js"
import { fastPaths, whenWindow, writeRequest } from "../src/ssh/Ssh2Internals.js"
import { connect } from "../src/ssh/Connection.js"
import { fingerprint } from "../src/ssh/Fingerprint.js"
import { parseFlags } from "./lib/flags.js"
import { log, runStandalone, type Bench } from "./lib/main.js"
import { cpuMs } from "./lib/proc.js"
import { startRegistry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { summarize } from "./lib/stats.js"

const MiB = 2 ** 20

export const sendcpu: Bench = async (argv) => {
  const f = parseFlags(argv, ["size", "runs", "cipher"])
  const size = f.size("size", "64M")
  const runs = f.int("runs", 5)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const started = Date.now()
  const reg = await startRegistry({ cipher })
  try {
    // deployctl's own connection (src/ssh/Connection.ts: TCP_NODELAY, a tick's writes in one writev).
    const scope = Effect.runSync(Scope.make())
    const client = await Effect.runPromise(Scope.extend(connect({
      host: "127.0.0.1", port: reg.port, username: "operator", privateKey: readFileSync(reg.operator.privatePath),
      verifyHostKey: (k) => fingerprint(k) === reg.fingerprint, hostKeyRefused: (seen) => `host key ${seen}`
    }), scope))
    // Pieces of 8 requests, as deployctl reads the file (src/ctl/Upload.ts).
    const piece = randomBytes(8 * 255 * 1024)
    const count = Math.ceil(size / piece.length)
    const mib = (count * piece.length) / MiB
    const source = Stream.range(1, count).pipe(Stream.map(() => piece))
    const variants: Record<string, (name: string) => Effect.Effect<unknown, unknown>> = {
      ours: (name) => Effect.scoped(Effect.flatMap(openSftp(client), (sftp) => upload(sftp, name, source))),
      "ssh2 write()": (name) => Effect.scoped(Effect.flatMap(openSftp(client), (sftp) => viaSsh2Write(sftp, name, piece, count))),
      raw: (name) => Effect.scoped(Effect.flatMap(openSftp(client), (sftp) => viaSsh2Write(sftp, name, piece, count, true)))
    }
    const cpu: Record<string, number[]> = { ours: [], "ssh2 write()": [], raw: [] }
    const reg_: Record<string, number[]> = { ours: [], "ssh2 write()": [], raw: [] }
    const wall: Record<string, number[]> = { ours: [], "ssh2 write()": [], raw: [] }
    // Interleaved (A B A B …) so the machine's load hits both alike; one round first, not counted (JIT warm-up).
    for (let i = -1; i < runs; i++) {
      for (const [k, run] of Object.entries(variants)) {
        const c0 = process.cpuUsage()
        const r0 = cpuMs(reg.pid)
        const t0 = performance.now()
        await Effect.runPromise(run(`sendcpu-${i + 1}-${k.length}.bin`))
        const t = performance.now() - t0
        const c = process.cpuUsage(c0)
        if (i < 0) continue
        cpu[k]!.push((c.user + c.system) / 1000 / mib)
        reg_[k]!.push((cpuMs(reg.pid) - r0) / mib)
        wall[k]!.push(mib / (t / 1000))
        log(`sendcpu: ${k} run ${i + 1}: client ${cpu[k]!.at(-1)!.toFixed(2)} ms/MiB, registry ${reg_[k]!.at(-1)!.toFixed(2)} ms/MiB, ${wall[k]!.at(-1)!.toFixed(0)} MiB/s`)
      }
    }
    await Effect.runPromise(Scope.close(scope, Exit.void))
    log(`sendcpu: WRITE requests framed into packets ${fastPaths.directWrites}, through ssh2's write() ${fastPaths.copiedWrites}`)
    const ref = "ssh2 write()"
    const rows: Row[] = [
      row({
        metric: "upload(): client CPU per MiB", unit: "ms", referenceName: "ssh2's write(), 12 in flight", reference: summarize(cpu[ref]!), ours: summarize(cpu["ours"]!),
        target: { kind: "ratio<=", value: 1 }, note: "this process only: framing, copies, encryption, writes, GC"
      }),
      row({ metric: "upload(): registry CPU per MiB", unit: "ms", referenceName: ref, reference: summarize(reg_[ref]!), ours: summarize(reg_["ours"]!) }),
      row({ metric: "upload(): throughput (both on this machine)", unit: "MiB/s", referenceName: ref, reference: summarize(wall[ref]!), ours: summarize(wall["ours"]!) })
    ]
    return {
      name: "sendcpu",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { size, runs, cipher },
      rows,
      extra: { directWrites: fastPaths.directWrites, copiedWrites: fastPaths.copiedWrites }
    }
  } finally {
    await reg.stop()
  }
}

/**
 * The upload as it was before writeRequest, as the reference: ssh2's write() (which builds each request in
 * a new buffer and copies it again into packets, queueing what the window cannot take), 12 in flight.
 */
const viaSsh2Write = (sftp: SFTPWrapper, name: string, piece: Buffer, count: number, direct = false) =>
  Effect.async<void, Error>((resume) => {
    sftp.open(name, "w", (err, handle) => {
      if (err) return resume(Effect.fail(err))
      const chunk = requestSize(sftp)
      const total = piece.length * count
      let offset = 0
      let inFlight = 0
      const pump = () => {
        while (inFlight < DEFAULT_IN_FLIGHT && offset < total) {
          const at = offset % piece.length
          const len = Math.min(chunk, piece.length - at, total - offset)
          const cb = (e?: Error | null) => {
            inFlight--
            if (e) return resume(Effect.fail(e))
            pump()
          }
          if (direct) {
            if (!writeRequest(sftp, handle, piece.subarray(at, at + len), offset, cb)) return whenWindow(sftp, pump)
          } else sftp.write(handle, piece, at, len, offset, cb)
          inFlight++
          offset += len
        }
        if (inFlight === 0 && offset >= total) sftp.close(handle, (e) => resume(e ? Effect.fail(e) : Effect.void))
      }
      pump()
    })
  })

runStandalone(import.meta.url, sendcpu)
