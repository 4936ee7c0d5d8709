// Opt-in measurement (`TEST_CPU_LOG=FILE npm test`, see vitest.config.ts): appends one JSON line per test
// file with the CPU seconds and minor page faults of the test process (collecting the file, then running it) and of the programs it started, its wall seconds, and
// the programs started by name (count and CPU), and the worker threads the test process started. Wall time is noise on a shared 2-core machine; CPU is
// what the suite costs. Children's CPU is counted once they exit and are reaped (`cutime`/`cstime`);
// per program it is sampled from /proc while it runs, so a very short-lived one may show as 0.
import { appendFileSync, readFileSync } from "node:fs"
import { createRequire, syncBuiltinESMExports } from "node:module"
import { relative } from "node:path"
import { afterAll, beforeAll } from "vitest"

const TICK = 100 // USER_HZ
const cpu = (pid: number | "self") => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return {
    self: (Number(f[11]) + Number(f[12])) / TICK,
    children: (Number(f[13]) + Number(f[14])) / TICK,
    // Minor page faults: on some VMs a fault on fresh memory costs ~12 µs (docs/bench.md), a large share of a start.
    faults: Number(f[7]),
    childFaults: Number(f[8])
  }
}

interface Started { n: number; cpu: number; faults: number }
const state = globalThis as { __cpuLogPrograms?: Map<string, Started>; __cpuLogThreads?: { n: number } }
// Once per worker (isolate: false): wrap child_process.spawn, which execFile and exec call too.
if (state.__cpuLogPrograms === undefined) {
  const programs = (state.__cpuLogPrograms = new Map())
  const cp = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process")
  const spawn = cp.spawn
  cp.spawn = function (this: unknown, cmd: string, ...rest: Array<unknown>) {
    const child = (spawn as (...a: Array<unknown>) => ReturnType<typeof spawn>).call(this, cmd, ...rest)
    const args = Array.isArray(rest[0]) ? (rest[0] as Array<string>) : []
    const name = cmd === process.execPath ? (args.find((a) => /\.(c|m)?[jt]s$/.test(a)) ?? "node").replace(/^.*\/(dist|scripts)\//, "$1/") : cmd.replace(/^.*\//, "")
    let last = 0
    let faults = 0
    const sample = () => {
      try {
        const c = cpu(child.pid!)
        last = c.self + c.children
        faults = c.faults + c.childFaults
      } catch {
        // gone
      }
    }
    const timer = setInterval(sample, 100).unref()
    child.stdout?.on("data", sample)
    child.stderr?.on("data", sample)
    child.once("exit", () => {
      clearInterval(timer)
      const p = programs.get(name) ?? { n: 0, cpu: 0, faults: 0 }
      p.n++
      p.cpu += last
      p.faults += faults
      programs.set(name, p)
    })
    return child
  } as typeof spawn
  // Worker threads started in the test process (the unpacker's writer, hashers, archive checks): their
  // start is in `self`, ~0.1-0.2 s of CPU each on this machine.
  const threads = (state.__cpuLogThreads = { n: 0 })
  const wt = createRequire(import.meta.url)("node:worker_threads") as typeof import("node:worker_threads")
  const Worker = wt.Worker
  wt.Worker = class extends Worker {
    constructor(...args: ConstructorParameters<typeof Worker>) {
      super(...args)
      threads.n++
    }
  } as typeof Worker
  syncBuiltinESMExports()
}

// This module runs again before each file (setupFiles): from here to beforeAll is the file's collection
// (importing it and whatever of its imports this worker has not loaded yet), outside `self`.
const loaded = cpu("self")
let start = loaded
let t0 = 0
let file = ""
beforeAll((suite) => {
  start = cpu("self")
  t0 = Date.now()
  state.__cpuLogPrograms!.clear()
  state.__cpuLogThreads!.n = 0
  file = relative(process.cwd(), (suite as { filepath?: string }).filepath ?? suite.name)
})
afterAll(() => {
  const end = cpu("self")
  const programs = Object.fromEntries([...state.__cpuLogPrograms!].map(([k, v]) => [k, { n: v.n, cpu: +v.cpu.toFixed(2), faults: v.faults }]))
  const line = { file, collect: +(start.self - loaded.self).toFixed(2), self: +(end.self - start.self).toFixed(2), children: +(end.children - start.children).toFixed(2), wall: (Date.now() - t0) / 1000, faults: end.faults - start.faults, childFaults: end.childFaults - start.childFaults, programs, threads: state.__cpuLogThreads!.n }
  appendFileSync(process.env.TEST_CPU_LOG!, JSON.stringify(line) + "\n")
})
