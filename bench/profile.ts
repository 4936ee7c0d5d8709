// Profiles the registry (node --cpu-prof) under one kind of load and prints where its CPU time goes.
//   node --import tsx bench/profile.ts -mode handshake|agent-poll|exec|upload|download|ctl-addver|agent-deploy [-window 10s] [-c 16] [-procs 2] [-size 256M] [-keep FILE.cpuprofile]
// ctl-addver and agent-deploy profile the client program (deployctl / deploy-agent) as well as the registry.
import { readdirSync, readFileSync } from "node:fs"
import { copyFile, mkdir, rm } from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../test/support/keys.js"
import { randomTarGz, tinyTarGz } from "./lib/data.js"
import { parseFlags, UsageError } from "./lib/flags.js"
import { Cleanup, log, runCli } from "./lib/main.js"
import { sftpGet, sftpPut } from "./lib/openssh.js"
import { cpuMs, run, warm } from "./lib/proc.js"
import { formatProfile, summarizeProfile } from "./lib/profile.js"
import { addVersionViaSftp, agentArgs, dist, sshExec, startRegistry } from "./lib/registry.js"
import { formatLoad, runLoadProcs, type Mode, type Target } from "./load.js"

const main = async (argv: ReadonlyArray<string>) => {
  const f = parseFlags(argv, ["mode", "window", "c", "procs", "size", "cipher", "top", "keep"])
  const mode = f.str("mode", "handshake")
  if (!["handshake", "agent-poll", "exec", "upload", "download", "ctl-addver", "agent-deploy"].includes(mode)) {
    throw new UsageError("-mode is handshake, agent-poll, exec, upload, download, ctl-addver or agent-deploy")
  }
  const clientProf = await tempDir("bench-prof-client-")
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const cleanup = new Cleanup()
  try {
    const profDir = await tempDir("bench-prof-")
    cleanup.add(() => rm(profDir, { recursive: true, force: true }))
    cleanup.add(() => rm(clientProf, { recursive: true, force: true }))
    const reg = await startRegistry({ cipher, nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profDir}`] })
    let stopped = false
    cleanup.add(async () => void (stopped || (await reg.stop())))
    const c0 = cpuMs(reg.pid)
    let what: string
    if (mode === "ctl-addver" || mode === "agent-deploy") {
      const data = await randomTarGz(f.size("size", "256M"))
      let args: string[]
      if (mode === "ctl-addver") {
        args = [dist.ctl, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "addver", "-name", "prof", "-version", "v1", "-file", data.path]
      } else {
        await addVersionViaSftp(reg, data.path, data.sha256, "prof", "v1")
        await sshExec(reg, "addconf -name prof -layer prof:v1")
        const dir = path.join(clientProf, "agent")
        await mkdir(dir)
        args = agentArgs(reg, "prof", dir, ["-once", "-script", ""])
      }
      await warm(data.path)
      const r = await run(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${clientProf}`, ...args])
      if (r.code !== 0) throw new Error(`${mode} failed: ${(r.stdout + r.stderr).trim()}`)
      what = `${mode} of ${data.bytes} bytes in ${r.ms.toFixed(0)} ms`
      const cp = readdirSync(clientProf).find((n) => n.endsWith(".cpuprofile"))
      if (cp) process.stdout.write(`== client (${mode}) ==\n${formatProfile(summarizeProfile(path.join(clientProf, cp), f.int("top", 25)))}\n\n`)
    } else if (mode === "download") {
      const data = await randomTarGz(f.size("size", "256M"))
      await addVersionViaSftp(reg, data.path, data.sha256, "prof", "v1")
      await warm(path.join(reg.dir, "files", data.sha256))
      const c1 = cpuMs(reg.pid)
      const local = path.join(clientProf, "got")
      const r = await sftpGet({ port: reg.port, user: "deploy-agent", opts: reg.clientOpts("agent") }, `/files/${data.sha256}`, local)
      what = `sftp get of ${data.bytes} bytes in ${r.ms.toFixed(0)} ms (registry CPU for the get alone ${(cpuMs(reg.pid) - c1).toFixed(0)} ms)`
    } else if (mode === "upload") {
      const data = await randomTarGz(f.size("size", "256M"))
      await warm(data.path)
      const r = await sftpPut({ port: reg.port, user: "operator", opts: reg.clientOpts("operator") }, data.path, "x.tar.gz")
      what = `sftp put of ${data.bytes} bytes in ${r.ms.toFixed(0)} ms`
    } else {
      const v1 = await tinyTarGz("capacity-v1", "v1\n")
      await addVersionViaSftp(reg, v1.path, v1.sha256, "bench", "v1")
      await sshExec(reg, "addconf -name bench -layer bench:v1")
      const keyPath = mode === "agent-poll" ? reg.agent.privatePath : reg.operator.privatePath
      const target: Target = {
        host: "127.0.0.1", port: reg.port, username: mode === "agent-poll" ? "deploy-agent" : "operator",
        privateKey: readFileSync(keyPath), keyPath, fingerprint: reg.fingerprint, cipher
      }
      const load = await runLoadProcs({
        target, mode: mode as Mode, command: "configurations", path: "/configs/bench.json",
        concurrency: f.int("c", 16), durationMs: f.duration("window", "10s"), procs: mode === "exec" ? 1 : f.int("procs", 2)
      })
      what = formatLoad(load)
    }
    const used = cpuMs(reg.pid) - c0
    stopped = true
    await reg.stop()
    const prof = readdirSync(profDir).find((n) => n.endsWith(".cpuprofile"))
    log(`${what}; registry CPU ${used.toFixed(0)} ms`)
    if (!prof) throw new Error("the registry wrote no .cpuprofile (did it exit cleanly on SIGTERM?)")
    process.stdout.write("== registry ==\n" + formatProfile(summarizeProfile(path.join(profDir, prof), f.int("top", 25))) + "\n")
    const keep = f.str("keep", "")
    if (keep !== "") {
      await copyFile(path.join(profDir, prof), keep)
      log(`registry profile kept in ${keep}`)
    }
  } finally {
    await cleanup.run()
  }
}

runCli(import.meta.url, main)
