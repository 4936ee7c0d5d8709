// The BUILT agent (`npm run build` first) as a child process, its stdout and stderr collected in one log.
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { childNodeFlags, repoRoot } from "./registry.js"

export const agentMain = path.join(repoRoot, "dist/agent/main.js")

export interface RunningAgent {
  readonly child: ChildProcess
  /** stderr + stdout so far */
  readonly log: () => string
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves when a log line matches (or the agent exits: false). */
  readonly waitForLine: (re: RegExp, from?: number) => Promise<boolean>
}

/** `node dist/agent/main.js -jitter 0 args…` in `cwd`: no random delay for tests to wait out. */
export const spawnAgent = (args: ReadonlyArray<string>, cwd: string): RunningAgent => {
  const child = spawn(process.execPath, [...childNodeFlags(), agentMain, "-jitter", "0", ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  const waiters: Array<() => void> = []
  const onData = (b: Buffer) => {
    out += b.toString()
    for (const w of waiters.splice(0)) w()
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  let done = false
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true
      for (const w of waiters.splice(0)) w()
      resolve({ code, signal })
    })
  )
  const waitForLine = (re: RegExp, from = 0) =>
    new Promise<boolean>((resolve) => {
      const check = () => {
        if (re.test(out.slice(from))) return resolve(true)
        if (done) return resolve(false)
        waiters.push(check)
      }
      check()
    })
  return { child, log: () => out, exited, waitForLine }
}

/** Resolves when the agent's log (from `from`) matches; fails with the log after `ms`. */
export const waitLine = async (a: RunningAgent, re: RegExp, from = 0, ms = 20_000): Promise<void> => {
  let timer: NodeJS.Timeout | undefined
  const hit = await Promise.race([a.waitForLine(re, from), new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)))])
  clearTimeout(timer)
  if (!hit) throw new Error(`agent log never matched ${re}:\n${a.log()}`)
}
