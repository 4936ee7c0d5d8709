// CPU (user + sys, all threads) per start of each built program, A/B over several dist directories,
// interleaved A B A B, each with its own warm code cache: `node -e 0`, the registry on a fresh -dir to its
// "listening" line (read from /proc; then stopped by SIGTERM), `deployctl components`, `deployctl addver -file` of a one-file layer
// (the archive check's worker), `deploy-agent -once` of a one-file layer, `deploy-from-docker -version`.
//   cp -a dist /tmp/ab/dist-old; ln -s $PWD/node_modules /tmp/ab/node_modules   (a copy must find node_modules)
//   node --import tsx bench/startcpu.ts -runs 15 [-only registry,agent] /tmp/ab/dist-old dist
import { spawn } from "node:child_process"
import { mkdir, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { addVersionViaSftp, agentArgs, startRegistry } from "./lib/registry.js"
import { cpuMs, run } from "./lib/proc.js"
import { tinyTarGz } from "./lib/data.js"
import { tempDir } from "../test/support/keys.js"

const argv = process.argv.slice(2)
let runs = 10
let only: string[] | undefined
const dists: string[] = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "-runs") runs = Number(argv[++i])
  else if (argv[i] === "-only") only = argv[++i]!.split(",")
  else dists.push(path.resolve(argv[i]!))
}
const scratch = await tempDir("startcpu-")
const reg = await startRegistry({ cipher: "aes128-gcm@openssh.com" })
const v1 = await tinyTarGz("startcpu-v1", "v1\n")
await addVersionViaSftp(reg, v1.path, v1.sha256, "bench", "v1")
await run("ssh", ["-p", String(reg.port), ...reg.clientOpts("operator"), "operator@127.0.0.1", "addconf -name bench -layer bench:v1"])

const timed = async (args: string[], env: NodeJS.ProcessEnv): Promise<number> => {
  const r = await run("/usr/bin/time", ["-f", "CPU %U %S", process.execPath, ...args], { env })
  const m = /CPU ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr)
  if (!m || r.code !== 0) throw new Error(`${args.join(" ")}: ${r.code} ${r.stdout} ${r.stderr}`)
  return (Number(m[1]) + Number(m[2])) * 1000
}
let n = 0
const progs: Record<string, (d: string, env: NodeJS.ProcessEnv) => Promise<number>> = {
  node: (_d, env) => timed(["-e", "0"], env),
  registry: async (d, env) => {
    const dir = path.join(scratch, `reg-${n++}`)
    await mkdir(dir)
    const keys = path.join(scratch, "keys")
    await writeFile(keys, reg.operator.publicLine + "\n")
    const child = spawn(process.execPath, [path.join(d, "registry/main.js"), "-addr", "127.0.0.1:0", "-dir", dir, "-opauth", keys, "-srvauth", keys], { stdio: ["ignore", "pipe", "pipe"], env })
    try {
      return await new Promise<number>((resolve, reject) => {
        let out = ""
        const onData = (b: Buffer) => {
          out += b
          if (/listening on/.test(out)) resolve(cpuMs(child.pid!))
        }
        child.stdout!.on("data", onData)
        child.stderr!.on("data", onData)
        child.once("exit", (c) => reject(new Error(`registry exited ${c}: ${out}`)))
      })
    } finally {
      // SIGTERM, as a service manager stops it: the registry exits cleanly (and a build that has no code
      // cache yet saves one at exit), so every row measures starts with a warm cache.
      const exited = new Promise((resolve) => child.once("exit", resolve))
      child.kill("SIGTERM")
      const force = setTimeout(() => child.kill("SIGKILL"), 5000)
      await exited
      clearTimeout(force)
      await rm(dir, { recursive: true, force: true })
    }
  },
  ctl: (d, env) => timed([path.join(d, "ctl/main.js"), "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "components"], env),
  ctlcheck: (d, env) => timed([path.join(d, "ctl/main.js"), "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "addver", "-name", "bench", "-version", `x${n++}`, "-file", v1.path], env),
  agent: async (d, env) => {
    const dir = path.join(scratch, `agent-${n++}`)
    await mkdir(dir)
    const args = agentArgs(reg, "bench", dir, ["-once", "-jitter", "0", "-script", ""])
    args[0] = path.join(d, "agent/main.js")
    try {
      return await timed(args, env)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  },
  docker: (d, env) => timed([path.join(d, "docker/main.js"), "-version"], env)
}
const names = Object.keys(progs).filter((k) => !only || only.includes(k))
const samples: Record<string, number[]> = {}
const envOf = (d: string) => ({ ...process.env, DEPLOY_TOOLS_CACHE: path.join(scratch, `cache-${dists.indexOf(d)}`) })
// Warm each variant's code cache.
for (const d of dists) for (const k of names) await progs[k]!(d, envOf(d))
for (let i = 0; i < runs; i++) {
  // Every other round in reverse order: neither build always runs right after the other (load drifts).
  for (const k of names) for (const d of i % 2 === 0 ? dists : [...dists].reverse()) (samples[`${k} ${d}`] ??= []).push(await progs[k]!(d, envOf(d)))
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
for (const [k, xs] of Object.entries(samples)) console.log(`${k.padEnd(40)} median ${med(xs).toFixed(0)} ms CPU, mean ${mean(xs).toFixed(0)} (${xs.length})`)
await reg.stop()
await rm(scratch, { recursive: true, force: true })
