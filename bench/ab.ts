// A/B of two builds of our programs, interleaved in one process (A B B A A B …), for judging a change on a
// machine whose speed drifts by 20–40% from minute to minute: two separate benchmark runs cannot tell a 10%
// change from noise, the same interleaved runs can. No reference: it prints medians and B/A.
//   git stash && npm run build && rm -rf dist-a && cp -r dist dist-a && git stash pop && npm run build
//   node --import tsx bench/ab.ts -a dist-a -b dist -what put,putaddver,get,addver,deploy -runs 7 -size 256M
//   node --import tsx bench/ab.ts -a dist-a -b dist -what handshake -runs 7    (registry CPU ms per handshake)
//   node --import tsx bench/ab.ts -a dist-a -b dist -what exec -runs 7         (per `configurations` on one connection)
//   node --import tsx bench/ab.ts -a dist-a -b dist -what smallput,smallctl -runs 20   (a new tiny layer each run:
//     sftp put + ssh addver, or deployctl addver -file; registry CPU, and deployctl's own CPU for smallctl)
// The builds must lie inside the repository (dist-a/ is ignored), where their bundles find node_modules.
import { mkdir, rm } from "node:fs/promises"
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { tempDir } from "../test/support/keys.js"
import { randomTarGz, sha256File, tinyTarGz, withDistinctCopy } from "./lib/data.js"
import { parseFlags, UsageError } from "./lib/flags.js"
import { Cleanup, runCli } from "./lib/main.js"
import { sftpGet, sftpPut } from "./lib/openssh.js"
import { cpuMs, mainThreadCpuMs, run, warm } from "./lib/proc.js"
import { addVersionViaSftp, agentArgs, root, sshExec, startRegistry, type Registry } from "./lib/registry.js"
import { summarize } from "./lib/stats.js"
import { runLoadProcs } from "./load.js"

const WHAT = ["put", "putaddver", "get", "addver", "deploy", "handshake", "exec", "smallput", "smallctl"] as const
type What = (typeof WHAT)[number]

export const main = async (argv: ReadonlyArray<string>): Promise<void> => {
  const f = parseFlags(argv, ["a", "b", "what", "runs", "size", "cipher"])
  const build = (flag: string, dflt: string) => {
    const dir = path.resolve(root, f.str(flag, dflt))
    for (const p of ["registry", "ctl", "agent"]) {
      if (!existsSync(path.join(dir, p, "main.js"))) throw new UsageError(`-${flag} ${dir}: no ${p}/main.js (a copy of dist/ inside the repository)`)
    }
    return { registry: path.join(dir, "registry/main.js"), ctl: path.join(dir, "ctl/main.js"), agent: path.join(dir, "agent/main.js") }
  }
  const builds = { A: build("a", "dist-a"), B: build("b", "dist") }
  const what = f.str("what", WHAT.join(",")).split(",").map((w) => w.trim()) as Array<What>
  for (const w of what) if (!WHAT.includes(w)) throw new UsageError(`-what: ${w}? (${WHAT.join(", ")})`)
  const runs = f.int("runs", 7)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  const cleanup = new Cleanup()
  try {
    const data = await randomTarGz(f.size("size", what.every((w) => w === "handshake" || w === "exec" || w.startsWith("small")) ? "1M" : "256M"))
    const work = await tempDir("bench-ab-")
    cleanup.add(() => rm(work, { recursive: true, force: true }))
    const regs: Record<"A" | "B", Registry> = {} as never
    for (const k of ["A", "B"] as const) {
      regs[k] = await startRegistry({ cipher, program: builds[k].registry })
      cleanup.add(() => regs[k].stop())
      await addVersionViaSftp(regs[k], data.path, data.sha256, "big", "v1")
      await sshExec(regs[k], "addconf -name ab -layer big:v1")
    }
    /** Registry CPU ms per request over a 3 s load window (load.ts `mode`, `configurations`). */
    const perRequest = async (k: "A" | "B", mode: "handshake" | "exec", concurrency: number, procs: number) => {
      const reg = regs[k]
      const c0 = cpuMs(reg.pid)
      const target = { host: "127.0.0.1", port: reg.port, username: "operator", privateKey: readFileSync(reg.operator.privatePath), keyPath: reg.operator.privatePath, fingerprint: reg.fingerprint, cipher }
      const r = await runLoadProcs({ target, mode, command: "configurations", concurrency, durationMs: 3000, procs })
      const per = (cpuMs(reg.pid) - c0) / Math.max(1, r.ok)
      return { ms: per, cpu: per }
    }
    // Each side's client runs against its own registry: a change to either end shows.
    /** `deployctl addver -file file` of build k, under /usr/bin/time: wall ms, registry CPU ms, deployctl's CPU ms. */
    const ctlAddver = async (k: "A" | "B", name: string, file: string) => {
      const c0 = cpuMs(regs[k].pid)
      const reg = regs[k]
      const r = await run("/usr/bin/time", ["-f", "cpu %U %S", process.execPath, builds[k].ctl, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "addver", "-name", name, "-version", "v1", "-file", file])
      if (r.code !== 0) throw new Error(`deployctl (${k}) failed: ${(r.stdout + r.stderr).trim()}`)
      const [, user, sys] = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr) ?? []
      return { ms: r.ms, cpu: cpuMs(reg.pid) - c0, client: (Number(user) + Number(sys)) * 1000 }
    }
    /** A distinct copy of the large layer for run i of build k (`base` keeps each kind's contents apart). */
    const distinct = <T>(k: "A" | "B", i: number, how: string, base: number, use: (copy: string) => Promise<T>) =>
      withDistinctCopy(data.path, path.join(work, `${how}-${k}-${i}.tar.gz`), base + i * 2 + (k === "A" ? 0 : 1), use)
    /** A tiny layer no registry has seen (a verdict is remembered per content). */
    const tiny = (k: "A" | "B", i: number, how: string) => tinyTarGz(`ab-${how}-${k}-${i}-${process.pid}`, `${how} ${k} ${i} ${Date.now()}\n`)
    const once: Record<What, (k: "A" | "B", i: number) => Promise<{ ms: number; cpu: number; main?: number; client?: number }>> = {
      put: async (k, i) => {
        await warm(data.path)
        const c0 = cpuMs(regs[k].pid)
        const m0 = mainThreadCpuMs(regs[k].pid)
        const r = await sftpPut({ port: regs[k].port, user: "operator", opts: regs[k].clientOpts("operator") }, data.path, `ab${i}.tar.gz`)
        return { ms: r.ms, cpu: cpuMs(regs[k].pid) - c0, main: mainThreadCpuMs(regs[k].pid) - m0 }
      },
      get: async (k) => {
        const c0 = cpuMs(regs[k].pid)
        const local = path.join(work, `got-${k}`)
        const r = await sftpGet({ port: regs[k].port, user: "deploy-agent", opts: regs[k].clientOpts("agent") }, `/files/${data.sha256}`, local)
        await rm(local, { force: true })
        return { ms: r.ms, cpu: cpuMs(regs[k].pid) - c0 }
      },
      // New content each run (distinctCopy): the registry's check of it is measured, not a remembered verdict.
      addver: (k, i) =>
        distinct(k, i, "addver", 0, async (copy) => {
          await warm(copy)
          return ctlAddver(k, `ab${i}`, copy)
        }),
      // The original workflow at full size, new content each run: `sftp put` then `ssh addver`, timed together
      // (a registry that checks an upload as it arrives moves that work from addver into the put).
      putaddver: (k, i) =>
        distinct(k, i, "putaddver", 1000, async (copy) => {
          const sha256 = await sha256File(copy)
          await warm(copy)
          const c0 = cpuMs(regs[k].pid)
          const t0 = performance.now()
          await addVersionViaSftp(regs[k], copy, sha256, `putaddver${i}`, "v1")
          return { ms: performance.now() - t0, cpu: cpuMs(regs[k].pid) - c0 }
        }),
      smallput: async (k, i) => {
        const layer = await tiny(k, i, "put")
        const c0 = cpuMs(regs[k].pid)
        const t0 = performance.now()
        await addVersionViaSftp(regs[k], layer.path, layer.sha256, `small${i}`, "v1")
        return { ms: performance.now() - t0, cpu: cpuMs(regs[k].pid) - c0 }
      },
      smallctl: async (k, i) => ctlAddver(k, `smallctl${i}`, (await tiny(k, i, "ctl")).path),
      // A 3 s window of new connections + one `configurations` each (c=8, 2 load processes): "ms" is the
      // registry's CPU per handshake.
      handshake: (k) => perRequest(k, "handshake", 8, 2),
      // A 3 s window of `configurations` exec'd one after another on one connection: the registry's CPU per command.
      exec: (k) => perRequest(k, "exec", 1, 1),
      deploy: async (k, i) => {
        const dir = path.join(work, `agent-${k}-${i}`)
        await mkdir(dir)
        const c0 = cpuMs(regs[k].pid)
        const args = agentArgs(regs[k], "ab", dir, ["-once", "-script", ""])
        args[0] = builds[k].agent
        const r = await run(process.execPath, args)
        if (r.code !== 0) throw new Error(`deploy-agent (${k}) failed: ${(r.stdout + r.stderr).trim()}`)
        await rm(dir, { recursive: true, force: true })
        return { ms: r.ms, cpu: cpuMs(regs[k].pid) - c0 }
      }
    }
    for (const w of what) {
      const ms: Record<"A" | "B", number[]> = { A: [], B: [] }
      const cpu: Record<"A" | "B", number[]> = { A: [], B: [] }
      const main: Record<"A" | "B", number[]> = { A: [], B: [] }
      const client: Record<"A" | "B", number[]> = { A: [], B: [] }
      for (let i = 0; i < runs; i++) {
        const order: ReadonlyArray<"A" | "B"> = i % 2 === 0 ? ["A", "B"] : ["B", "A"]
        for (const k of order) {
          const r = await once[w](k, i)
          ms[k].push(r.ms)
          cpu[k].push(r.cpu)
          if (r.main !== undefined) main[k].push(r.main)
          if (r.client !== undefined) client[k].push(r.client)
        }
      }
      const [a, b] = [summarize(ms.A), summarize(ms.B)]
      const [ca, cb] = [summarize(cpu.A), summarize(cpu.B)]
      const digits = w === "handshake" || w === "exec" ? 3 : w.startsWith("small") ? 1 : 0
      const line = (s: { median: number; min: number; max: number }) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`
      process.stdout.write(
        `${w.padEnd(7)} ms A ${line(a)}  B ${line(b)}  B/A ${(b.median / a.median).toFixed(2)}   registry CPU ms A ${line(ca)}  B ${line(cb)}\n`
      )
      // Where it has a row of its own (put): the registry's main thread alone, what limits an upload.
      if (main.A.length > 0) {
        const [ma, mb] = [summarize(main.A), summarize(main.B)]
        process.stdout.write(`${"".padEnd(7)} registry main thread CPU ms A ${line(ma)}  B ${line(mb)}  B/A ${(mb.median / ma.median).toFixed(2)}\n`)
      }
      if (client.A.length > 0) {
        const [la, lb] = [summarize(client.A), summarize(client.B)]
        process.stdout.write(`${"".padEnd(7)} deployctl CPU ms A ${line(la)}  B ${line(lb)}  B/A ${(lb.median / la.median).toFixed(2)}\n`)
      }
    }
  } finally {
    await cleanup.run()
  }
}

runCli(import.meta.url, main)
