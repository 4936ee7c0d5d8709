// Benchmark 1, upload: `deployctl addver -file` and OpenSSH `sftp put` into our registry, against
// OpenSSH `sftp put` into OpenSSH sshd, same file, same cipher, page cache warmed the same way.
// Also the registry's RSS during uploads, and its growth over idle during one large (1 GiB) upload.
//   node --import tsx bench/upload.ts [-size 256M] [-runs 5] [-large 1G|0] [-cipher aes128-gcm@openssh.com]
import { rm } from "node:fs/promises"
import * as path from "node:path"
import { randomTarGz, withDistinctCopy } from "./lib/data.js"
import { coreLimits, limitRows } from "./lib/limits.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { mbps, sftpPut, type Endpoint } from "./lib/openssh.js"
import { cpuMs, readMem, warm, watchMemory } from "./lib/proc.js"
import { deployctl, haveProgram, startRegistry, type Registry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { startSshd } from "./lib/sshd.js"
import { tempDir } from "../test/support/keys.js"
import { clientCpuRows } from "./sendcpu.js"
import { interleave, summarize } from "./lib/stats.js"

const MiB = 2 ** 20

export const upload: Bench = async (argv) => {
  const f = parseFlags(argv, ["size", "runs", "large", "cipher"])
  const size = f.size("size", "256M")
  const runs = f.int("runs", 5)
  const large = f.size("large", "1G")
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  const extra: Record<string, unknown> = {}
  try {
    log(`upload: making a ${(size / MiB).toFixed(0)} MiB incompressible tar.gz ...`)
    const data = await randomTarGz(size)
    const scratch = await tempDir("bench-upload-")
    cleanup.add(() => rm(scratch, { recursive: true, force: true }))
    const sshd = await startSshd({ cipher })
    cleanup.add(() => sshd.stop())
    const sshdEp: Endpoint = { port: sshd.port, user: sshd.user, opts: sshd.clientOpts }
    const sshdDest = path.join(sshd.dir, "upload.bin")

    let reg: Registry | undefined
    if (haveProgram("registry")) {
      reg = await startRegistry({ cipher })
      cleanup.add(() => reg!.stop())
    } else log("upload: dist/registry/main.js missing: measuring the reference only")
    const regEp: Endpoint | undefined = reg && { port: reg.port, user: "operator", opts: reg.clientOpts("operator") }
    const withCtl = reg !== undefined && haveProgram("ctl")

    const rss: { sftp: number[]; ctl: number[]; idle: number[] } = { sftp: [], ctl: [], idle: [] }
    const cpu: { sftp: number[]; ctl: number[] } = { sftp: [], ctl: [] }
    // Measures one registry-side transfer: wall time, peak RSS and CPU of the registry process.
    const onRegistry = async (kind: "sftp" | "ctl", fn: () => Promise<number>): Promise<number> => {
      const r = reg!
      rss.idle.push(readMem(r.pid)?.rssKiB ?? NaN)
      const mem = watchMemory(r.pid)
      const c0 = cpuMs(r.pid)
      const ms = await fn()
      cpu[kind].push(cpuMs(r.pid) - c0)
      const m = mem.stop()
      rss[kind].push(m.peakKiB / 1024)
      return ms
    }

    const variants: Record<string, (i: number) => Promise<number>> = {
      "sftp→sshd": async () => {
        await warm(data.path)
        const r = await sftpPut(sshdEp, data.path, sshdDest)
        await rm(sshdDest, { force: true })
        return mbps(data.bytes, r.ms)
      }
    }
    if (regEp) {
      variants["sftp→registry"] = async () => {
        await warm(data.path)
        return mbps(data.bytes, await onRegistry("sftp", async () => (await sftpPut(regEp, data.path, "upload.tar.gz")).ms))
      }
    }
    if (withCtl) {
      variants["deployctl addver"] = async (i) => {
        // New content each run (distinctCopy), as a new component: nothing can be skipped as known, not even
        // the registry's check of the layer (its verdict is remembered per content).
        return withDistinctCopy(data.path, path.join(scratch, `addver-${i}.tar.gz`), i, async (copy) => {
          await warm(copy)
          const ms = await onRegistry("ctl", async () => {
            const r = await deployctl(reg!, ["addver", "-name", `upload${i}`, "-version", "v1", "-file", copy])
            if (r.code !== 0) throw new Error(`deployctl addver failed: ${(r.stdout + r.stderr).trim()}`)
            return r.ms
          })
          return mbps(data.bytes, ms)
        })
      }
    }
    log(`upload: ${runs} rounds of ${Object.keys(variants).join(", ")} (${cipher})`)
    const st = await interleave(runs, variants, log)
    const ref = st["sftp→sshd"]!
    rows.push(row({ metric: "sftp put → sshd (reference)", unit: "MB/s", ours: ref }))
    if (st["sftp→registry"]) {
      rows.push(row({ metric: "sftp put → registry", unit: "MB/s", referenceName: "sftp put → sshd", reference: ref, ours: st["sftp→registry"], target: { kind: "ratio>=", value: 1.2 } }))
    }
    if (st["deployctl addver"]) {
      rows.push(row({
        metric: "deployctl addver -file", unit: "MB/s", referenceName: "sftp put → sshd", reference: ref, ours: st["deployctl addver"],
        target: { kind: "ratio>=", value: 1.0 }, note: "includes deployctl's tar.gz check, the upload, the registry's fsync and the addver round trip"
      }))
    }
    if (st["sftp→registry"]) {
      log("upload: one core's cipher and sha256 throughput ...")
      rows.push(...limitRows(cipher, coreLimits(cipher, Math.min(runs, 3)), [
        { metric: "sftp put → registry", ours: st["sftp→registry"], goal: 0.8 },
        ...(st["deployctl addver"] ? [{ metric: "deployctl addver -file", ours: st["deployctl addver"] }] : [])
      ]))
    }
    if (reg) {
      // Where deployctl's time goes on the client: its upload's CPU per MiB against ssh2's own write() path.
      log("upload: the client's CPU per MiB of upload() (bench/sendcpu.ts) ...")
      rows.push(...(await clientCpuRows(reg, Math.min(size, 64 * MiB), runs)))
      const idle = summarize(rss.idle.map((k) => k / 1024))
      rows.push(row({ metric: "registry RSS idle before upload", unit: "MiB", ours: idle }))
      rows.push(row({ metric: "registry peak RSS, sftp put", unit: "MiB", ours: summarize(rss.sftp) }))
      if (rss.ctl.length) rows.push(row({ metric: "registry peak RSS, deployctl addver", unit: "MiB", ours: summarize(rss.ctl) }))
      rows.push(row({ metric: "registry CPU per upload, sftp put", unit: "ms", ours: summarize(cpu.sftp), note: `for ${(data.bytes / MiB).toFixed(0)} MiB` }))
      if (cpu.ctl.length) rows.push(row({ metric: "registry CPU per upload, deployctl", unit: "ms", ours: summarize(cpu.ctl) }))
    }

    if (reg && large > 0) {
      log(`upload: one ${(large / MiB).toFixed(0)} MiB upload for RSS growth over idle ...`)
      const big = await randomTarGz(large)
      const measure = async (fn: () => Promise<unknown>) => {
        await warm(big.path)
        await new Promise((r) => setTimeout(r, 1000))
        const idleKiB = readMem(reg!.pid)?.rssKiB ?? NaN
        const mem = watchMemory(reg!.pid)
        await fn()
        const m = mem.stop()
        return { idleMiB: idleKiB / 1024, peakMiB: m.peakKiB / 1024, growthMiB: (m.peakKiB - idleKiB) / 1024 }
      }
      const viaSftp = await measure(() => sftpPut(regEp!, big.path, "large.tar.gz"))
      extra["large_sftp"] = viaSftp
      rows.push(row({
        metric: `registry RSS growth, ${(large / MiB).toFixed(0)} MiB sftp put`, unit: "MiB", ours: summarize([viaSftp.growthMiB]),
        target: { kind: "ours<=", value: 32 }, note: `idle ${viaSftp.idleMiB.toFixed(1)} MiB, peak ${viaSftp.peakMiB.toFixed(1)} MiB (one run)`
      }))
      if (withCtl) {
        const viaCtl = await measure(async () => {
          const r = await deployctl(reg!, ["addver", "-name", "large", "-version", "v1", "-file", big.path])
          if (r.code !== 0) throw new Error(`deployctl addver (large) failed: ${(r.stdout + r.stderr).trim()}`)
        })
        extra["large_ctl"] = viaCtl
        rows.push(row({
          metric: `registry RSS growth, ${(large / MiB).toFixed(0)} MiB deployctl addver`, unit: "MiB", ours: summarize([viaCtl.growthMiB]),
          target: { kind: "ours<=", value: 32 }, note: `idle ${viaCtl.idleMiB.toFixed(1)} MiB, peak ${viaCtl.peakMiB.toFixed(1)} MiB (one run)`
        }))
      }
    }
    return {
      name: "upload",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { size: data.bytes, runs, cipher, large },
      rows,
      extra
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, upload)
