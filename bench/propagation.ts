// Benchmark 4, propagation: time from `deployctl changeconf` returning to the deploy script starting,
// with one agent at its default settings (-poll 30s plus up to 5 s jitter): the watch session pushes the
// change (issue 17: p50 < 300 ms, p99 < 1 s). `-watch=false` runs the registry without watch, so the
// agent polls (compare with -poll 1s). The script appends `date +%s%N`; we compare with the wall clock
// when changeconf exited.
//   node --import tsx bench/propagation.ts [-changes 50] [-poll 30s] [-watch=false]
import { spawn } from "node:child_process"
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../test/support/keys.js"
import { tinyTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { nowNs, stopChild, waitFor } from "./lib/proc.js"
import { addVersionViaSftp, agentArgs, deployctl, haveProgram, requirePrograms, sshExec, startRegistry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { percentile, summarize } from "./lib/stats.js"

export const propagation: Bench = async (argv) => {
  const f = parseFlags(argv, ["changes", "poll", "cipher", "watch"])
  const changes = f.int("changes", 50)
  const poll = f.str("poll", "30s")
  const watch = f.str("watch", "true") !== "false"
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  requirePrograms("registry", "agent")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    const work = await tempDir("bench-propagation-")
    cleanup.add(() => rm(work, { recursive: true, force: true }))
    const reg = await startRegistry({ cipher, extraArgs: watch ? [] : ["-watch=false"] })
    cleanup.add(() => reg.stop())
    const v1 = await tinyTarGz("prop-v1", "v1\n")
    const v2 = await tinyTarGz("prop-v2", "v2\n")
    await addVersionViaSftp(reg, v1.path, v1.sha256, "prop", "v1")
    await addVersionViaSftp(reg, v2.path, v2.sha256, "prop", "v2")
    await sshExec(reg, "addconf -name prop -layer prop:v1")

    const dir = path.join(work, "agent")
    await mkdir(dir)
    const stamps = path.join(work, "stamps")
    const script = path.join(work, "deploy.sh")
    await writeFile(script, `#!/bin/sh\necho "$(date +%s%N) $NEWID" >> '${stamps}'\n`)
    await chmod(script, 0o755)
    const readStamps = async () =>
      (await readFile(stamps, "utf8").catch(() => ""))
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => {
          const [ns, id] = l.split(" ")
          return { ns: BigInt(ns!), id: id ?? "" }
        })

    let agentLog = ""
    const agent = spawn(process.execPath, agentArgs(reg, "prop", dir, ["-poll", poll, "-script", script]), { stdio: ["ignore", "pipe", "pipe"] })
    agent.stdout.on("data", (d: Buffer) => (agentLog += d.toString()))
    agent.stderr.on("data", (d: Buffer) => (agentLog += d.toString()))
    cleanup.add(() => stopChild(agent))
    await waitFor("the agent's first deploy", async () => (await readStamps()).length >= 1, 60_000).catch((e: Error) => {
      throw new Error(`${e.message}; agent log: ${agentLog.trim().split("\n").slice(-5).join(" | ")}`)
    })

    const useCtl = haveProgram("ctl")
    const delays: number[] = []
    for (let i = 0; i < changes; i++) {
      const before = (await readStamps()).length
      const version = i % 2 === 0 ? "v2" : "v1"
      let returnedNs: bigint
      if (useCtl) {
        const r = await deployctl(reg, ["changeconf", "-name", "prop", "-component", "prop", "-version", version])
        returnedNs = nowNs()
        if (r.code !== 0) throw new Error(`changeconf failed: ${(r.stdout + r.stderr).trim()}`)
      } else {
        await sshExec(reg, `changeconf -name prop -component prop -version ${version}`)
        returnedNs = nowNs()
      }
      await waitFor(`deploy ${i + 1}`, async () => (await readStamps()).length > before, 60_000, 5).catch((e: Error) => {
        throw new Error(`${e.message}; agent log: ${agentLog.trim().split("\n").slice(-5).join(" | ")}`)
      })
      const s = (await readStamps())[before]!
      const ms = Number(s.ns - returnedNs) / 1e6
      delays.push(ms)
      log(`  [${i + 1}/${changes}] changeconf → script start: ${ms.toFixed(0)} ms`)
    }
    const st = summarize(delays)
    rows.push(row({
      metric: `propagation, ${watch ? "watch" : "no watch"}, -poll ${poll}`, unit: "ms", ours: st,
      note: `p50 ${st.median.toFixed(0)} ms, p99 ${percentile(delays, 99).toFixed(0)} ms, max ${st.max.toFixed(0)} ms over ${changes} changes` +
        ` (changeconf via ${useCtl ? "deployctl" : "ssh exec"}${watch ? "; pushed by the watch session" : "; the agent adds up to 5 s jitter to each poll"})`
    }))
    return {
      name: "propagation",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { changes, poll, cipher, watch },
      rows,
      extra: { delaysMs: delays }
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, propagation)
