// Runs the deploy script in its own process group with exactly the environment it is given.
// stdout and stderr go to the agent's log line by line (fault 4). If the cycle is interrupted
// (SIGTERM/SIGINT), the group gets SIGTERM, then SIGKILL after the grace period.
import { Context, Duration, Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import type { Readable } from "node:stream"
import { StringDecoder } from "node:string_decoder"
import { ScriptFailed } from "../domain/AgentErrors.js"
import { MAX_REPORT_LINE_CHARS, MAX_REPORT_LINES } from "../domain/Report.js"
import { AgentConfig } from "./AgentConfig.js"
import { AgentLog, type AgentLogService } from "./AgentLog.js"

export interface ScriptRun {
  readonly script: string
  readonly env: Readonly<Record<string, string>>
  /** For messages: which configuration and hash the script deploys. */
  readonly configuration: string
  readonly hash: string
}

export class ScriptRunner extends Context.Tag("agent/ScriptRunner")<
  ScriptRunner,
  { readonly run: (r: ScriptRun) => Effect.Effect<void, ScriptFailed> }
>() {}

const signalGroup = (pid: number | undefined, signal: NodeJS.Signals) => {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is gone already
  }
}

const groupAlive = (pid: number) => {
  try {
    process.kill(-pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves when the stream ends, or after `ms` (a daemon started by the script may hold the pipe open). */
const drained = (s: Readable, ms: number) =>
  new Promise<void>((resolve) => {
    if (s.readableEnded || s.destroyed) return resolve()
    const t = setTimeout(resolve, ms)
    s.once("close", () => {
      clearTimeout(t)
      resolve()
    })
  })

/** Longest script output line logged as one line; a longer one (or one that never ends) is split. */
export const MAX_LINE_CHARS = 16 * 1024

/**
 * Calls `emit` for every line of `s`, like readline, except that memory is bounded: a line longer
 * than `max` characters is emitted in pieces of `max`, each but the last marked as continued.
 */
export const forwardLines = (s: Readable, emit: (line: string) => void, max = MAX_LINE_CHARS) => {
  const decoder = new StringDecoder("utf8")
  let pending = ""
  let afterCR = false // a "\r" ended the last chunk: a "\n" starting the next one belongs to it
  const push = (text: string) => {
    let start = afterCR && text.startsWith("\n") ? 1 : 0
    afterCR = false
    const ends = /\r\n|\r|\n/g
    for (;;) {
      ends.lastIndex = start
      const m = ends.exec(text)
      pending += text.slice(start, m === null ? text.length : m.index)
      while (pending.length > max) {
        emit(`${pending.slice(0, max)} [line continues]`)
        pending = pending.slice(max)
      }
      if (m === null) return
      emit(pending)
      pending = ""
      start = m.index + m[0].length
      if (m[0] === "\r" && start === text.length) afterCR = true
    }
  }
  s.on("data", (b: Buffer) => push(decoder.write(b)))
  s.once("end", () => {
    push(decoder.end())
    if (pending !== "") emit(pending)
    pending = ""
  })
}

export const makeScriptRunner = (log: AgentLogService, killGrace: Duration.Duration) => ({
  run: (r: ScriptRun) =>
    Effect.async<void, ScriptFailed>((resume) => {
      // The last lines, for the registry's status (Reporter.ts); bounded in number and length.
      const tail: Array<string> = []
      const failed = (status: string) => new ScriptFailed({ configuration: r.configuration, hash: r.hash, status, lines: [...tail] })
      let settled = false
      let exited = false
      const settle = (e: Effect.Effect<void, ScriptFailed>) => {
        if (!settled) {
          settled = true
          resume(e)
        }
      }
      const child = spawn(r.script, [], { env: { ...r.env }, detached: true, stdio: ["ignore", "pipe", "pipe"] })
      const forward = (s: Readable, tag: string) =>
        forwardLines(s, (l) => {
          log.line("info", `script ${tag}: ${l}`)
          tail.push(l.length > MAX_REPORT_LINE_CHARS ? `${l.slice(0, MAX_REPORT_LINE_CHARS - 1)}…` : l)
          if (tail.length > MAX_REPORT_LINES) tail.shift()
        })
      forward(child.stdout!, "stdout")
      forward(child.stderr!, "stderr")
      child.once("error", (err) => {
        exited = true
        settle(Effect.fail(failed(`cannot run ${r.script}: ${err.message}`)))
      })
      child.once("exit", (code, signal) => {
        exited = true
        void Promise.all([drained(child.stdout!, 1000), drained(child.stderr!, 1000)]).then(() => {
          child.stdout!.destroy()
          child.stderr!.destroy()
          settle(code === 0 ? Effect.void : Effect.fail(failed(code !== null ? `exit status ${code}` : `killed by signal ${signal}`)))
        })
      })
      // Interrupted (agent shutting down): stop the whole group, politely first, then SIGKILL
      // whatever is left of it (the script or anything it started) after the grace period.
      return Effect.async<void>((done) => {
        if (child.pid === undefined || (exited && !groupAlive(child.pid))) return done(Effect.void)
        const pid = child.pid
        log.line("warn", `stopping deploy script (pid ${pid}): SIGTERM to its process group`)
        signalGroup(pid, "SIGTERM")
        const started = Date.now()
        const timer = setInterval(() => {
          if (exited && !groupAlive(pid)) {
            clearInterval(timer)
            return done(Effect.void)
          }
          if (Date.now() - started >= Duration.toMillis(killGrace)) {
            clearInterval(timer)
            log.line("warn", `deploy script (pid ${pid}) group still running after ${Duration.format(killGrace)}: SIGKILL`)
            signalGroup(pid, "SIGKILL")
            if (exited) done(Effect.void)
            else child.once("exit", () => done(Effect.void))
          }
        }, 25)
      })
    })
})

export const ScriptRunnerLive = Layer.effect(
  ScriptRunner,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const log = yield* AgentLog
    return makeScriptRunner(log, cfg.killGrace)
  })
)
