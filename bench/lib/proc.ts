// Child processes for the benchmarks: timed runs, long-running servers, and /proc readings
// (peak RSS from VmHWM, resettable through clear_refs; CPU time from /proc/<pid>/stat).
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"

export interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** Wall time from spawn to exit, milliseconds. */
  readonly ms: number
  /** Arrival time (ms since spawn) of every output line, both streams. */
  readonly lines: ReadonlyArray<{ readonly at: number; readonly stream: "out" | "err"; readonly text: string }>
}

export interface RunOptions {
  readonly cwd?: string
  readonly env?: NodeJS.ProcessEnv
  readonly input?: string | Buffer
  readonly timeoutMs?: number
  /** Called with the child's pid right after spawn (to sample its memory while it runs). */
  readonly onSpawn?: (pid: number) => void
}

/** Runs a command to completion and times it (wall clock). Never throws for a non-zero exit. */
export const run = (cmd: string, args: ReadonlyArray<string>, opts: RunOptions = {}): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const spawnOpts: SpawnOptions = { stdio: ["pipe", "pipe", "pipe"] }
    if (opts.cwd !== undefined) spawnOpts.cwd = opts.cwd
    if (opts.env !== undefined) spawnOpts.env = opts.env
    const child = spawn(cmd, [...args], spawnOpts)
    if (opts.onSpawn && child.pid !== undefined) opts.onSpawn(child.pid)
    const out: Buffer[] = []
    const err: Buffer[] = []
    const lines: Array<{ at: number; stream: "out" | "err"; text: string }> = []
    const collect = (stream: "out" | "err", sink: Buffer[]) => {
      let partial = ""
      return (chunk: Buffer) => {
        sink.push(chunk)
        const at = performance.now() - t0
        const parts = (partial + chunk.toString("utf8")).split("\n")
        partial = parts.pop() ?? ""
        for (const text of parts) lines.push({ at, stream, text })
      }
    }
    child.stdout!.on("data", collect("out", out))
    child.stderr!.on("data", collect("err", err))
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined
    child.once("error", (e) => {
      if (timer) clearTimeout(timer)
      reject(new Error(`cannot run ${cmd}: ${e.message}`))
    })
    child.once("close", (code, signal) => {
      if (timer) clearTimeout(timer)
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        ms: performance.now() - t0,
        lines
      })
    })
    if (opts.input !== undefined) child.stdin!.end(opts.input)
    else child.stdin!.end()
  })

/** Like run, but a non-zero exit is an error carrying the command's stderr. */
export const runOk = async (cmd: string, args: ReadonlyArray<string>, opts: RunOptions = {}): Promise<RunResult> => {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-5).join(" | ")
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code ?? r.signal}: ${detail}`)
  }
  return r
}

/** Shell one-liner (for `cat f > /dev/null`, `sync`, ...). */
export const sh = (script: string): Promise<RunResult> => runOk("sh", ["-c", script])

/** Reads the whole file into the page cache the same way for every side of a comparison. */
export const warm = (file: string): Promise<RunResult> => runOk("sh", ["-c", 'cat "$1" > /dev/null', "sh", file])

// ---- /proc readings --------------------------------------------------------------------------

const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux x86-64/arm64; checked by `getconf CLK_TCK` in docs/bench.md

export interface Mem {
  /** Current resident set, KiB. */
  readonly rssKiB: number
  /** Peak resident set since start or the last resetPeak, KiB. */
  readonly hwmKiB: number
}

export const readMem = (pid: number): Mem | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8")
    const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(s)?.[1] ?? NaN)
    return { rssKiB: get("VmRSS"), hwmKiB: get("VmHWM") }
  } catch {
    return undefined
  }
}

/** Resets VmHWM to the current RSS (writing 5 to clear_refs; needs to own the process). */
export const resetPeak = (pid: number): boolean => {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5")
    return true
  } catch {
    return false
  }
}

/** CPU time (user + system) of a process in ms; with children, adds the reaped children's time too. */
export const cpuMs = (pid: number, withChildren = false): number => statCpuMs(`/proc/${pid}/stat`, withChildren)

/** CPU time of a process's main thread alone (its workers and libuv's threadpool left out). */
export const mainThreadCpuMs = (pid: number): number => statCpuMs(`/proc/${pid}/task/${pid}/stat`, false)

const statCpuMs = (file: string, withChildren: boolean): number => {
  try {
    const s = readFileSync(file, "utf8")
    // Fields after the parenthesised command name, which may itself contain spaces.
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ")
    const [ut, st, cut, cst] = [f[11], f[12], f[13], f[14]].map(Number) as [number, number, number, number]
    return ((ut + st + (withChildren ? cut + cst : 0)) * 1000) / clkTck
  } catch {
    return NaN
  }
}

/**
 * Samples a process's RSS every `everyMs` while a measurement runs; `stop` returns the peak seen, and also
 * VmHWM when resetPeak worked (the kernel's peak, which catches spikes between samples).
 */
export const watchMemory = (pid: number, everyMs = 50) => {
  const usedHwm = resetPeak(pid)
  const start = readMem(pid)
  let peakKiB = start?.rssKiB ?? 0
  const timer = setInterval(() => {
    const m = readMem(pid)
    if (m && m.rssKiB > peakKiB) peakKiB = m.rssKiB
  }, everyMs)
  return {
    startKiB: start?.rssKiB ?? NaN,
    stop: (): { startKiB: number; peakKiB: number; endKiB: number } => {
      clearInterval(timer)
      const m = readMem(pid)
      const hwm = usedHwm && m ? m.hwmKiB : 0
      return { startKiB: start?.rssKiB ?? NaN, peakKiB: Math.max(peakKiB, hwm, m?.rssKiB ?? 0), endKiB: m?.rssKiB ?? NaN }
    }
  }
}

/** Waits until `pred` holds, polling; fails after `timeoutMs`. */
export const waitFor = async (what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 20): Promise<void> => {
  const end = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** Stops a child we started: SIGTERM, then SIGKILL after `graceMs`. */
export const stopChild = (child: ChildProcess, graceMs = 5000): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode)
    const t = setTimeout(() => child.kill("SIGKILL"), graceMs)
    child.once("exit", (code) => {
      clearTimeout(t)
      resolve(code)
    })
    child.kill("SIGTERM")
  })

/** Wall-clock nanoseconds since the epoch as a bigint, comparable with `date +%s%N`. */
export const nowNs = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n
