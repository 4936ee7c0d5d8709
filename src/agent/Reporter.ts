// Turns the cycle's attempts into reports (domain/Report.ts) for the watch session: `deploying` when a
// new hash is taken up, then how the attempt ended. A cycle that found nothing to do is reported only
// when it says something new (first report, or another hash), so a quiet fleet sends nothing.
import { Cause, Clock, Context, DateTime, Effect, Exit, Layer, Option } from "effect"
import type { Sha256 } from "../domain/Names.js"
import { describeCause, outcomeOf as outcomeOfResult } from "../domain/DeployOutcome.js"
import { MAX_REPORT_LINE_CHARS, MAX_REPORT_LINES, type Outcome, Report } from "../domain/Report.js"
import { VERSION } from "../domain/Version.js"
import { AgentConfig } from "./AgentConfig.js"
import type { CycleResult } from "./Agent.js"
import { AgentSession } from "./Session.js"
import { StateFile } from "./StateFile.js"

export class Reporter extends Context.Tag("agent/Reporter")<
  Reporter,
  {
    /** A cycle started deploying `target`. */
    readonly deploying: (target: string) => Effect.Effect<void>
    /** A cycle ended (started at `startedMs`). */
    readonly attempt: (exit: Exit.Exit<CycleResult, unknown>, startedMs: number) => Effect.Effect<void>
    /** The hash deployed here as far as the agent knows (wakes compare events with it). */
    readonly running: () => string | undefined
  }
>() {}

/** The report outcome of a failed cycle, by the error's tag (results with an outcome: settled below). */
export const outcomeOf = (e: unknown): Outcome => {
  switch ((e as { _tag?: string })?._tag) {
    case "ScriptFailed":
      return "failed"
    case "UnsafeArchive":
    case "UnpackError":
      return "unpack-refused"
    case "RegistryError":
    case "HashMismatch":
    case "CacheError":
      return "download-failed"
    default:
      return "failed"
  }
}

const clip = (s: string, max = 500) => (s.length > max ? `${s.slice(0, max - 1)}…` : s)

/** A failing step's last lines as a report carries them (within Report's bounds), or nothing. */
const reportLines = (l: ReadonlyArray<string> | undefined) =>
  l === undefined || l.length === 0 ? {} : { lines: l.slice(-MAX_REPORT_LINES).map((x) => clip(x, MAX_REPORT_LINE_CHARS)) }

export const make = Effect.gen(function* () {
  const cfg = yield* AgentConfig
  const session = yield* AgentSession
  const state = yield* StateFile
  let running = Option.getOrUndefined(yield* Effect.orElseSucceed(state.read, () => Option.none()))?.Hash as string | undefined
  let target: string | undefined
  let lastSent: string | undefined
  let heldTarget: string | undefined

  const send = (r: Omit<ConstructorParameters<typeof Report>[0], "host" | "agentVersion" | "configuration" | "hash">) =>
    Effect.gen(function* () {
      const report = new Report({ host: cfg.hostName, agentVersion: VERSION, configuration: cfg.name, hash: (running ?? "") as Sha256 | "", ...r })
      lastSent = `${report.outcome} ${report.hash}`
      yield* session.report(report)
    })

  // The first word: what runs here now (sent when the session comes up).
  yield* send({ outcome: "deployed" })

  const deploying = (t: string) =>
    Effect.suspend(() => {
      target = t
      return send({ outcome: "deploying", target: t as Sha256 })
    })

  /** A cycle that ended with a result: what runs now, and what became of the registry's hash. */
  const settled = (r: CycleResult, timing: { readonly started: DateTime.Utc; readonly durationMs: number }) =>
    Effect.gen(function* () {
      switch (r._tag) {
        case "Unchanged":
        case "Deployed":
          running = r.hash
          if (r._tag === "Unchanged" && lastSent === `deployed ${running}`) return
          return yield* send({ outcome: "deployed", target: r.hash as Sha256, ...timing })
        case "RolledBack":
        case "DeployFailed": {
          running = r._tag === "RolledBack" ? r.restored : r.previous
          const f = r.failure
          return yield* send({ outcome: outcomeOfResult(r), target: r.hash as Sha256, reason: clip(`${f.Step} failed: ${f.Status}`), ...reportLines(f.Lines), ...timing })
        }
        case "Held":
        case "Refused": {
          // Said once per hash and outcome: a held or refused state is seen again at every poll and event.
          running = r.current ?? running
          const outcome = outcomeOfResult(r)
          if (lastSent === `${outcome} ${running ?? ""}` && heldTarget === r.hash) return
          heldTarget = r.hash
          const reason = r._tag === "Refused" ? r.reason : `${r.record.Failure.Step} failed: ${r.record.Failure.Status}`
          return yield* send({ outcome, target: r.hash as Sha256, reason: clip(reason), ...(r._tag === "Held" ? reportLines(r.record.Failure.Lines) : {}), ...timing })
        }
      }
    })

  const attempt = (exit: Exit.Exit<CycleResult, unknown>, startedMs: number) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const timing = { started: DateTime.unsafeMake(startedMs), durationMs: Math.max(0, Math.round(now - startedMs)) }
      const t = target
      target = undefined
      if (Exit.isSuccess(exit)) return yield* settled(exit.value, timing)
      // Not reachable, or nothing taken up yet: nothing to tell (and likely no session to tell it on).
      if (t === undefined) return
      const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
      const message = Cause.isInterruptedOnly(exit.cause)
        ? describeCause(exit.cause)
        : (failure as { message?: string } | undefined)?.message ?? Cause.pretty(exit.cause).split("\n")[0] ?? "failed"
      const lines = (failure as { lines?: ReadonlyArray<string> } | undefined)?.lines
      yield* send({
        outcome: failure === undefined ? "failed" : outcomeOf(failure),
        target: t as Sha256,
        reason: clip(message),
        ...reportLines(lines),
        ...timing
      })
    })

  return Reporter.of({ deploying, attempt, running: () => running })
})

export const ReporterLive = Layer.effect(Reporter, make)
