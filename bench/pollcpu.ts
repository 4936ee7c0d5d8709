// The registry's CPU (all threads, from /proc) per agent poll and per `deploy-agent -once` run, A/B over
// several dist directories, interleaved: each round starts one registry per build, runs an agent-poll load
// against it (connect as deploy-agent, read /configs/<name>.json over SFTP, disconnect; c=8 from 2
// processes) and then `-runs-agent` sequential `deploy-agent -once` runs of a one-file layer (the build's
// own agent), and reads the registry's CPU around each part.
//   cp -a dist /tmp/ab/dist-old; cp package.json /tmp/ab/; ln -s $PWD/node_modules /tmp/ab/node_modules
//   node --import tsx bench/pollcpu.ts [-rounds 3] [-window 5s] [-agents 8] /tmp/ab/dist-old dist
import { readFileSync } from "node:fs"
import { mkdir, rm } from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "../test/support/keys.js"
import { tinyTarGz } from "./lib/data.js"
import { cpuMs, run } from "./lib/proc.js"
import { addVersionViaSftp, agentArgs, sshExec, startRegistry } from "./lib/registry.js"
import { runLoadProcs, type Target } from "./load.js"

const argv = process.argv.slice(2)
let rounds = 3
let windowMs = 5000
let agents = 8
const dists: string[] = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "-rounds") rounds = Number(argv[++i])
  else if (argv[i] === "-window") windowMs = Number(argv[++i]!.replace(/s$/, "")) * 1000
  else if (argv[i] === "-agents") agents = Number(argv[++i])
  else dists.push(path.resolve(argv[i]!))
}
const cipher = "aes128-gcm@openssh.com"
const scratch = await tempDir("pollcpu-")
const v1 = await tinyTarGz("pollcpu-v1", "v1\n")
const settle = () => new Promise((r) => setTimeout(r, 300))

const measure = async (d: string) => {
  const reg = await startRegistry({ cipher, program: path.join(d, "registry/main.js") })
  try {
    await addVersionViaSftp(reg, v1.path, v1.sha256, "bench", "v1")
    await sshExec(reg, "addconf -name bench -layer bench:v1")
    const target: Target = {
      host: "127.0.0.1", port: reg.port, username: "deploy-agent", privateKey: readFileSync(reg.agent.privatePath),
      keyPath: reg.agent.privatePath, fingerprint: reg.fingerprint, cipher
    }
    await settle()
    const c0 = cpuMs(reg.pid)
    const load = await runLoadProcs({ target, mode: "agent-poll", command: "configurations", path: "/configs/bench.json", concurrency: 8, durationMs: windowMs, procs: 2 })
    const perPoll = (cpuMs(reg.pid) - c0) / load.ok
    await settle()
    const c1 = cpuMs(reg.pid)
    const env = { ...process.env, DEPLOY_TOOLS_CACHE: path.join(scratch, `cache-${dists.indexOf(d)}`) }
    for (let i = 0; i < agents; i++) {
      const dir = path.join(scratch, `agent-${dists.indexOf(d)}-${i}`)
      await mkdir(dir)
      const args = agentArgs(reg, "bench", dir, ["-once", "-jitter", "0", "-script", ""])
      args[0] = path.join(d, "agent/main.js")
      const r = await run(process.execPath, args, { env })
      if (r.code !== 0) throw new Error(`agent: ${r.stdout}${r.stderr}`)
      await rm(dir, { recursive: true, force: true })
    }
    await settle()
    return { perPoll, perAgent: (cpuMs(reg.pid) - c1) / agents }
  } finally {
    await reg.stop()
  }
}

const samples = new Map(dists.map((d) => [d, { poll: [] as number[], agent: [] as number[] }]))
for (let i = 0; i < rounds; i++) {
  for (const d of i % 2 === 0 ? dists : [...dists].reverse()) {
    const m = await measure(d)
    samples.get(d)!.poll.push(m.perPoll)
    samples.get(d)!.agent.push(m.perAgent)
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const all = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" ")
for (const [d, s] of samples) {
  console.log(`${d.padEnd(40)} registry CPU per agent poll median ${med(s.poll).toFixed(2)} ms (${all(s.poll)}); per agent -once run ${med(s.agent).toFixed(1)} ms (${all(s.agent)})`)
}
await rm(scratch, { recursive: true, force: true })
