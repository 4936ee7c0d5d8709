// What one upload costs the client's CPU, apart from start-up, the file and the check: `upload()`
// (src/ssh/SftpWrite.ts, the code deployctl sends with) of an in-memory stream to a registry, in this
// process, timed with process.cpuUsage() (this process: framing, copies, encryption, writes, GC). The
// registry's CPU for the same bytes comes from /proc. CPU per MiB is what to compare between builds on
// a loaded machine: unlike MB/s it barely moves with the load.
//   node --import tsx bench/sendcpu.ts [-size 64M] [-runs 5] [-cipher aes128-gcm@openssh.com]
import { Effect, Exit, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { openSftp } from "../src/ssh/Sftp.js"
import { upload } from "../src/ssh/SftpWrite.js"
import { fastPaths } from "../src/ssh/Ssh2Internals.js"
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
    // 2 MiB pieces, as deployctl reads the file (8 requests of 255 KiB are not a multiple of 2 MiB: some
    // requests straddle two pieces, as in deployctl).
    const piece = randomBytes(2 * MiB)
    const source = Stream.range(1, Math.ceil(size / piece.length)).pipe(Stream.map(() => piece))
    const mine: number[] = []
    const theirs: number[] = []
    const wall: number[] = []
    // One run first, not counted: the JIT's warm-up is start-up, measured elsewhere.
    for (let i = -1; i < runs; i++) {
      const c0 = process.cpuUsage()
      const r0 = cpuMs(reg.pid)
      const t0 = performance.now()
      await Effect.runPromise(Effect.scoped(Effect.flatMap(openSftp(client), (sftp) => upload(sftp, `sendcpu${i + 1}.bin`, source))))
      const t = performance.now() - t0
      const c = process.cpuUsage(c0)
      const mib = (Math.ceil(size / piece.length) * piece.length) / MiB
      if (i < 0) continue
      mine.push((c.user + c.system) / 1000 / mib)
      theirs.push((cpuMs(reg.pid) - r0) / mib)
      wall.push(mib / (t / 1000))
      log(`sendcpu: run ${i + 1}: client ${mine.at(-1)!.toFixed(2)} ms/MiB, registry ${theirs.at(-1)!.toFixed(2)} ms/MiB, ${wall.at(-1)!.toFixed(0)} MiB/s`)
    }
    await Effect.runPromise(Scope.close(scope, Exit.void))
    log(`sendcpu: WRITE requests framed into packets ${fastPaths.directWrites}, through ssh2's write() ${fastPaths.copiedWrites}`)
    const rows: Row[] = [
      row({ metric: "upload(): client CPU per MiB", unit: "ms", ours: summarize(mine), note: "this process: framing, copies, encryption, writes, GC" }),
      row({ metric: "upload(): registry CPU per MiB", unit: "ms", ours: summarize(theirs) }),
      row({ metric: "upload(): throughput (both on this machine)", unit: "MiB/s", ours: summarize(wall) })
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

runStandalone(import.meta.url, sendcpu)
