// Benchmark 2, download + unpack: the agent deploying a configuration with one large layer (-once, fresh
// dir, no script) against OpenSSH `sftp get` from sshd + GNU `tar xzf`; and OpenSSH `sftp get` of the
// blob from our registry (as deploy-agent, /files/<sha>) against `sftp get` of the same file from sshd.
//   node --import tsx bench/download.ts [-size 256M] [-runs 5] [-cipher aes128-gcm@openssh.com]
import { copyFile, mkdir, rm } from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../test/support/keys.js"
import { randomTarGz } from "./lib/data.js"
import { coreLimits, limitRows } from "./lib/limits.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { mbps, sftpGet, type Endpoint } from "./lib/openssh.js"
import { run, runOk, warm, watchMemory } from "./lib/proc.js"
import { addVersionViaSftp, agentArgs, haveProgram, sshExec, startRegistry, type Registry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { startSshd } from "./lib/sshd.js"
import { interleave, summarize } from "./lib/stats.js"

export const download: Bench = async (argv) => {
  const f = parseFlags(argv, ["size", "runs", "cipher"])
  const size = f.size("size", "256M")
  const runs = f.int("runs", 5)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    const data = await randomTarGz(size)
    const work = await tempDir("bench-download-")
    cleanup.add(() => rm(work, { recursive: true, force: true }))
    const sshd = await startSshd({ cipher })
    cleanup.add(() => sshd.stop())
    const sshdEp: Endpoint = { port: sshd.port, user: sshd.user, opts: sshd.clientOpts }
    const sshdFile = path.join(sshd.dir, "blob.tar.gz")
    await copyFile(data.path, sshdFile)
    const local = path.join(work, "got.tar.gz")

    let reg: Registry | undefined
    if (haveProgram("registry")) {
      reg = await startRegistry({ cipher })
      cleanup.add(() => reg!.stop())
      await addVersionViaSftp(reg, data.path, data.sha256, "big", "v1")
      await sshExec(reg, "addconf -name download -layer big:v1")
    } else log("download: dist/registry/main.js missing: measuring the reference only")
    const regBlob = reg && path.join(reg.dir, "files", data.sha256)
    const agentEp: Endpoint | undefined = reg && { port: reg.port, user: "deploy-agent", opts: reg.clientOpts("agent") }
    const withAgent = reg !== undefined && haveProgram("agent")

    const tarMs: number[] = []
    const getMs: number[] = []
    const agentSplit: Array<{ startupMs: number; downloadMs: number; unpackMs: number }> = []
    const agentRss: number[] = []
    const variants: Record<string, (i: number) => Promise<number>> = {
      "sftp get ← sshd": async () => {
        await warm(sshdFile)
        const r = await sftpGet(sshdEp, sshdFile, local)
        await rm(local, { force: true })
        return mbps(data.bytes, r.ms)
      },
      "sftp get + tar xzf": async (i) => {
        await warm(sshdFile)
        const dest = path.join(work, `tar${i}`)
        const g = await sftpGet(sshdEp, sshdFile, local)
        await mkdir(dest)
        const t = await runOk("tar", ["-C", dest, "-xzf", local])
        getMs.push(g.ms)
        tarMs.push(t.ms)
        await rm(local, { force: true })
        await rm(dest, { recursive: true, force: true })
        return g.ms + t.ms
      }
    }
    if (agentEp) {
      variants["sftp get ← registry"] = async () => {
        await warm(regBlob!)
        const r = await sftpGet(agentEp, `/files/${data.sha256}`, local)
        await rm(local, { force: true })
        return mbps(data.bytes, r.ms)
      }
    }
    if (withAgent) {
      variants["agent -once"] = async (i) => {
        await warm(regBlob!)
        const dir = path.join(work, `agent${i}`)
        await mkdir(dir)
        // Sample the agent's memory while it runs (peak RSS must stay flat: downloads are streamed).
        let mem: ReturnType<typeof watchMemory> | undefined
        const r = await run(process.execPath, agentArgs(reg!, "download", dir, ["-once", "-script", "", "-v"]), {
          onSpawn: (pid) => (mem = watchMemory(pid, 20))
        })
        const m = mem?.stop()
        if (m) agentRss.push(m.peakKiB / 1024)
        if (r.code !== 0) throw new Error(`agent -once exited ${r.code}: ${(r.stdout + r.stderr).trim().split("\n").slice(-3).join(" | ")}`)
        // Split the run with the agent's own log lines (-v): start-up until its first line, then
        // "downloading layer" .. "downloaded layer", then .. "unpacked" (arrival times in this process).
        const at = (re: RegExp) => r.lines.find((l) => re.test(l.text))?.at
        const first = r.lines[0]?.at
        const dlStart = at(/downloading layer/i)
        const dlEnd = at(/downloaded layer/i)
        const unpacked = at(/unpacked \d+ layer/i)
        if (first !== undefined && dlStart !== undefined && dlEnd !== undefined && unpacked !== undefined) {
          agentSplit.push({ startupMs: first, downloadMs: dlEnd - dlStart, unpackMs: unpacked - dlEnd })
        }
        await rm(dir, { recursive: true, force: true })
        return r.ms
      }
    }
    log(`download: ${runs} rounds of ${Object.keys(variants).join(", ")} (${(data.bytes / 2 ** 20).toFixed(0)} MiB, ${cipher})`)
    const st = await interleave(runs, variants, log)
    const refGet = st["sftp get ← sshd"]!
    const refDeploy = st["sftp get + tar xzf"]!
    rows.push(row({ metric: "sftp get ← sshd (reference)", unit: "MB/s", ours: refGet }))
    rows.push(row({
      metric: "sftp get + tar xzf (reference)", unit: "ms", ours: refDeploy,
      note: `get ${summarize(getMs).median.toFixed(0)} ms + tar xzf ${summarize(tarMs).median.toFixed(0)} ms (medians)`
    }))
    if (st["sftp get ← registry"]) {
      rows.push(row({ metric: "sftp get ← registry", unit: "MB/s", referenceName: "sftp get ← sshd", reference: refGet, ours: st["sftp get ← registry"], target: { kind: "ratio>=", value: 1.0 } }))
    }
    if (st["agent -once"]) {
      rows.push(row({
        metric: "agent deploy (-once, fresh dir)", unit: "ms", referenceName: "sftp get + tar xzf", reference: refDeploy, ours: st["agent -once"],
        target: { kind: "ratio<=", value: 1.2 }, note: "agent: process start, connect, fetch document, download + verify, unpack, write state"
      }))
      if (agentSplit.length > 0) {
        rows.push(row({
          metric: "agent download (its 'downloading'..'downloaded' log lines)", unit: "MB/s", referenceName: "sftp get ← sshd", reference: refGet,
          ours: summarize(agentSplit.map((s) => mbps(data.bytes, s.downloadMs))), target: { kind: "ratio>=", value: 1.0 },
          note: "excludes the agent's start-up and connect, which sftp's figure includes: the ratio flatters the agent slightly"
        }))
        rows.push(row({ metric: "agent unpack ('downloaded'..'unpacked')", unit: "ms", referenceName: "tar xzf", reference: summarize(tarMs), ours: summarize(agentSplit.map((s) => s.unpackMs)), note: "ours includes a syncfs of the tree" }))
        rows.push(row({ metric: "agent start-up (spawn to first log line)", unit: "ms", ours: summarize(agentSplit.map((s) => s.startupMs)) }))
      } else {
        rows.push(row({ metric: "agent download", unit: "MB/s", ours: summarize([]), target: { kind: "ratio>=", value: 1.0 }, note: "the agent's -v log lacked the downloading/downloaded/unpacked lines: cannot split" }))
      }
    }
    if (st["sftp get ← registry"]) {
      log("download: one core's cipher and sha256 throughput ...")
      const agentMbps = agentSplit.length > 0 ? [{ metric: "agent download", ours: summarize(agentSplit.map((s) => mbps(data.bytes, s.downloadMs))) }] : []
      rows.push(...limitRows(cipher, coreLimits(cipher, Math.min(runs, 3)), [{ metric: "sftp get ← registry", ours: st["sftp get ← registry"] }, ...agentMbps]))
    }
    if (agentRss.length) rows.push(row({ metric: "agent peak RSS during deploy (sampled every 20 ms)", unit: "MiB", ours: summarize(agentRss) }))
    return {
      name: "download",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { size: data.bytes, runs, cipher },
      rows
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, download)
