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
import { fastPaths, whenWindow } from "../src/ssh/Ssh2Internals.js"
import { writeRequest } from "../src/ssh/Ssh2InternalsWrite.js"
import { connect } from "../src/ssh/Connection.js"
import { fingerprint } from "../src/ssh/Fingerprint.js"
import { parseFlags } from "./lib/flags.js"
import { log, runStandalone, type Bench } from "./lib/main.js"
import { cpuMs } from "./lib/proc.js"
import { startRegistry, type Registry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { summarize } from "./lib/stats.js"

const MiB = 2 ** 20

/**
 * Client CPU per MiB of upload() against `reg`, interleaved with ssh2's write() (the old path) and a bare
 * writeRequest loop (the framing alone, without upload()'s Stream and fiber): rows for the upload benchmark.
 */
export const clientCpuRows = async (reg: Registry, size: number, runs: number): Promise<Row[]> => {
  // deployctl's own connection (src/ssh/Connection.ts: TCP_NODELAY, a tick's writes in one writev).
  const scope = Effect.runSync(Scope.make())
  try {
    const client = await Effect.runPromise(Scope.extend(connect({
      host: "127.0.0.1", port: reg.port, username: "operator", privateKey: readFileSync(reg.operator.privatePath),
      verifyHostKey: (k) => fingerprint(k) === reg.fingerprint, hostKeyRefused: (seen) => `host key ${seen}`
    }), scope))
    // Pieces of 8 requests, as deployctl reads the file (src/ctl/Upload.ts).
    const piece = randomBytes(8 * 255 * 1024)
    const count = Math.max(1, Math.round(size / piece.length))
    const mib = (count * piece.length) / MiB
    const source = Stream.range(1, count).pipe(Stream.map(() => piece))
    const session = <A>(f: (sftp: SFTPWrapper) => Effect.Effect<A, unknown>) => Effect.scoped(Effect.flatMap(openSftp(client), f))
    const REF = "ssh2 write()"
    const RAW = "writeRequest loop"
    const variants: Record<string, (name: string) => Effect.Effect<unknown, unknown>> = {
      "upload()": (name) => session((sftp) => upload(sftp, name, source)),
      [REF]: (name) => session((sftp) => writeLoop(sftp, name, piece, count, false)),
      [RAW]: (name) => session((sftp) => writeLoop(sftp, name, piece, count, true))
    }
    const cpu: Record<string, number[]> = {}
    const regCpu: Record<string, number[]> = {}
    // Interleaved (A B C A B C …) so the machine's load hits each alike; one round first, not counted (JIT warm-up).
    for (let i = -1; i < runs; i++) {
      for (const [k, run] of Object.entries(variants)) {
        const c0 = process.cpuUsage()
        const r0 = cpuMs(reg.pid)
        await Effect.runPromise(run(`sendcpu-${i + 1}-${k.length}.bin`))
        const c = process.cpuUsage(c0)
        if (i < 0) continue
        ;(cpu[k] ??= []).push((c.user + c.system) / 1000 / mib)
        ;(regCpu[k] ??= []).push((cpuMs(reg.pid) - r0) / mib)
      }
    }
    log(`sendcpu: WRITE requests framed into packets ${fastPaths.directWrites}, through ssh2's write() ${fastPaths.copiedWrites}`)
    const note = `this process only (framing, copies, encryption, writes, GC), ${mib.toFixed(0)} MiB from memory`
    return [
      row({ metric: "upload(): client CPU per MiB", unit: "ms", referenceName: "ssh2's write(), 12 in flight", reference: summarize(cpu[REF]!), ours: summarize(cpu["upload()"]!), target: { kind: "ratio<=", value: 1 }, note }),
      row({ metric: "bare writeRequest loop: client CPU per MiB", unit: "ms", referenceName: REF, reference: summarize(cpu[REF]!), ours: summarize(cpu[RAW]!), note: "the framing alone: what upload()'s Stream and fiber add is the difference to upload()" }),
      row({ metric: "upload(): registry CPU per MiB", unit: "ms", referenceName: REF, reference: summarize(regCpu[REF]!), ours: summarize(regCpu["upload()"]!) })
    ]
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

export const sendcpu: Bench = async (argv) => {
  const f = parseFlags(argv, ["size", "runs", "cipher"])
  const size = f.size("size", "64M")
  const runs = f.int("runs", 5)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const started = Date.now()
  const reg = await startRegistry({ cipher })
  try {
    const rows = await clientCpuRows(reg, size, runs)
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
 * `count` pieces written with 12 requests in flight from callbacks: through ssh2's write() (the upload as
 * it was before writeRequest: each request built in a new buffer, copied again into packets, what the
 * window cannot take queued), or through writeRequest (waiting for the window when it is short).
 */
const writeLoop = (sftp: SFTPWrapper, name: string, piece: Buffer, count: number, direct: boolean) =>
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
