// Turns the cycle's attempts into reports (domain/Report.ts) for the watch session: `deploying` when a
// new hash is taken up, then how the attempt ended. A cycle that found nothing to do is reported only
// when it says something new (first report, or another hash), so a quiet fleet sends nothing.
import { Cause, Clock, Context, DateTime, Effect, Exit, Layer, Option } from "effect"
import type { Sha256 } from "../domain/Names.js"
import { type Outcome, Report } from "../domain/Report.js"
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

/** The report outcome of a failed cycle, by the error's tag (other helpers add theirs: refused, rolled-back). */
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

export const make = Effect.gen(function* () {
  const cfg = yield* AgentConfig
  const session = yield* AgentSession
  const state = yield* StateFile
  let running = Option.getOrUndefined(yield* Effect.orElseSucceed(state.read, () => Option.none()))?.Hash as string | undefined
  let target: string | undefined
  let lastSent: string | undefined

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

  const attempt = (exit: Exit.Exit<CycleResult, unknown>, startedMs: number) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const timing = { started: DateTime.unsafeMake(startedMs), durationMs: Math.max(0, Math.round(now - startedMs)) }
      const t = target
      target = undefined
      if (Exit.isSuccess(exit)) {
        running = exit.value.hash
        if (exit.value._tag === "Unchanged" && lastSent === `deployed ${running}`) return
        return yield* send({ outcome: "deployed", target: running as Sha256, ...timing })
      }
      if (Cause.isInterruptedOnly(exit.cause)) return
      // Not reachable, or nothing taken up yet: nothing to tell (and likely no session to tell it on).
      if (t === undefined) return
      const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
      const message = (failure as { message?: string } | undefined)?.message ?? Cause.pretty(exit.cause).split("\n")[0] ?? "failed"
      const lines = (failure as { lines?: ReadonlyArray<string> } | undefined)?.lines
      yield* send({
        outcome: failure === undefined ? "failed" : outcomeOf(failure),
        target: t as Sha256,
        reason: clip(message),
        ...(lines !== undefined && lines.length > 0 ? { lines } : {}),
        ...timing
      })
    })

  return Reporter.of({ deploying, attempt, running: () => running })
})

export const ReporterLive = Layer.effect(Reporter, make)
