// deploy-agent -metrics-file PATH: after every attempt, the agent's metrics in node_exporter's textfile
// format (Prometheus text format 0.0.4, no timestamps), written atomically so the collector never reads
// half a file. The exporter's modules are imported only when the flag is given.
import { Cause, Context, Effect, Exit, Layer, Metric, Option } from "effect"
import { outcomeOf as resultOutcome } from "../domain/DeployOutcome.js"
import { VERSION } from "../domain/Version.js"
import { writeFileAtomic } from "../fs/Atomic.js"
import type { CycleResult } from "./Agent.js"
import { attempts, lastAttempt, lastSuccess } from "./AgentMetrics.js"
import { AgentLog } from "./AgentLog.js"
import { outcomeOf as failureOutcome } from "./Reporter.js"
import { StateFile } from "./StateFile.js"

export class MetricsFile extends Context.Tag("agent/MetricsFile")<
  MetricsFile,
  {
    /** Records the attempt's outcome and rewrites the file; never fails (a write problem is a warning). */
    readonly attempted: (exit: Exit.Exit<CycleResult, unknown>) => Effect.Effect<void>
  }
>() {}

/** The outcome label of an attempt: the report's outcome, `unchanged` for a cycle with nothing to do. */
export const attemptOutcome = (exit: Exit.Exit<CycleResult, unknown>): string => {
  if (Exit.isSuccess(exit)) return exit.value._tag === "Unchanged" ? "unchanged" : exit.value._tag === "Held" ? "held" : resultOutcome(exit.value)
  const failure = Cause.failureOption(exit.cause)
  return failure._tag === "Some" ? failureOutcome(failure.value) : "failed"
}

/** After every attempt: its outcome and the timestamps. */
export const recordAttempt = (exit: Exit.Exit<CycleResult, unknown>) =>
  Effect.sync(() => {
    const now = Date.now() / 1000
    const outcome = attemptOutcome(exit)
    Metric.tagged(attempts, "outcome", outcome).unsafeUpdate(1, [])
    lastAttempt.unsafeUpdate(now, [])
    if (outcome === "deployed" || outcome === "unchanged") lastSuccess.unsafeUpdate(now, [])
  })

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')

/** The info family: the configuration and the hash deployed here (a state, not an event, so written from the state file). */
export const infoFamily = (configuration: string, hash: string | undefined): string =>
  [
    "# HELP deploy_agent_info configuration and the hash deployed here (value 1; hash empty before the first deploy)",
    "# TYPE deploy_agent_info gauge",
    `deploy_agent_info{configuration="${escapeLabel(configuration)}",hash="${escapeLabel(hash ?? "")}",version="${escapeLabel(VERSION)}"} 1`,
    ""
  ].join("\n")

export const MetricsFileLive = (file: string, configuration: string): Layer.Layer<MetricsFile, never, StateFile | AgentLog> =>
  Layer.scoped(
    MetricsFile,
    Effect.gen(function* () {
      const log = yield* AgentLog
      const state = yield* StateFile
      const { makeExposition } = yield* Effect.promise(() => import("../metrics/LoadExposition.js"))
      const exposition = yield* makeExposition({ name: "deploy-agent", version: VERSION })
      const write = Effect.gen(function* () {
        const deployed = yield* Effect.orElseSucceed(state.read, () => Option.none())
        const text = yield* Effect.promise(() => exposition.render(false, (name) => name.startsWith("deploy_agent_")))
        yield* Effect.tryPromise(() => writeFileAtomic(file, infoFamily(configuration, Option.getOrUndefined(deployed)?.Hash) + text, { mode: 0o644 }))
      }).pipe(Effect.catchAll((e) => log.warn(`cannot write -metrics-file ${file}: ${(e.error as Error)?.message ?? String(e.error)}`)))
      yield* write // at start: the file exists before the first attempt ends
      return MetricsFile.of({
        // Every attempt that ended, an interruption from within too (a stop never gets here: Agent.ts loop).
        attempted: (exit) => Effect.zipRight(recordAttempt(exit), write)
      })
    })
  )
