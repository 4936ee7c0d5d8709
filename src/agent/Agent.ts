// One cycle of the agent (DESIGN.md "Agent cycle") as one Effect over its services, and the loop
// that repeats it on a Schedule: every -poll plus up to 5 s of jitter after a success; after a
// failure, exponential backoff from -poll, capped at 10 × -poll. A failed cycle is logged with its
// cause and never ends the loop. A wake-up (SIGHUP) cuts the current wait short.
import { Cause, Clock, Duration, Effect, Exit, Option, Random, Schedule, ScheduleDecision, ScheduleInterval } from "effect"
import * as path from "node:path"
import { type CycleResult, Deployed, describeCause, Held, Refused, Unchanged } from "../domain/DeployOutcome.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import type { Sha256 } from "../domain/Names.js"
import { AgentConfig } from "./AgentConfig.js"
import { countingBytes, scriptSeconds, timed, unpackSeconds } from "./AgentMetrics.js"
import { AgentLog } from "./AgentLog.js"
import { Cache } from "./Cache.js"
import { MetricsFile } from "./MetricsFile.js"
import { RegistryClient } from "./RegistryClient.js"
import { RetryGate } from "./RetryGate.js"
import { Reporter } from "./Reporter.js"
import { StateFile } from "./StateFile.js"
import { deployOrSwitchBack } from "./SwitchBack.js"
import { checkTrust, recordSignedAt } from "./TrustPolicy.js"
import { Unpacker } from "./Unpacker.js"

export type { CycleResult } from "../domain/DeployOutcome.js"
export { passThrough, scriptEnv } from "./HealthCheck.js"

const label = (l: { readonly Name: string; readonly Version: string }) => `${l.Name}@${l.Version}`
const blobsOf = (doc: ConfigurationDocument | undefined): Array<string> => (doc?.Layers ?? []).map((l) => l.Hash as string)

/**
 * Cleanup once `doc` is the deployed configuration: cached blobs not used by it or by the configuration
 * deployed before it (kept for a rollback), and with -cleanold every other unpacked tree. It also runs
 * when nothing changed, so what a crash between the state write and this cleanup left goes at the next
 * poll. Failures are warnings: the deploy stands. A list of previous blobs that cannot be read keeps the
 * whole cache.
 */
const housekeeping = (doc: ConfigurationDocument, previous: Effect.Effect<ReadonlyArray<string>, { readonly message: string }>) =>
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const log = yield* AgentLog
    const cache = yield* Cache
    const unpacker = yield* Unpacker
    const warn = (e: { readonly message: string }) => Effect.as(log.warn(e.message), [] as ReadonlyArray<string>)
    const removedBlobs = yield* previous.pipe(
      Effect.flatMap((prev) => cache.retainOnly([...blobsOf(doc), ...prev])),
      Effect.catchAll(warn)
    )
    if (removedBlobs.length > 0) yield* log.debug(`removed ${removedBlobs.length} unused blob(s) from the cache`)
    if (cfg.cleanOld) {
      const removed = yield* unpacker.removeOthers([doc.Hash]).pipe(Effect.catchAll(warn))
      for (const h of removed) yield* log.info(`removed old tree ${path.join(cfg.dir, "unpacked", h)}`)
    }
  })

/** Tells the Reporter (Reporter.ts), when the agent runs with one (not with -once); never fails the cycle. */
const reported = (f: (r: Reporter["Type"]) => Effect.Effect<void>) =>
  Effect.flatMap(Effect.serviceOption(Reporter), (r) => (Option.isSome(r) ? Effect.catchAllDefect(f(r.value), () => Effect.void) : Effect.void))

/** Rewrites -metrics-file (MetricsFile.ts) after an attempt, when the agent has one. */
const metricsFile = (exit: Exit.Exit<CycleResult, unknown>) =>
  Effect.flatMap(Effect.serviceOption(MetricsFile), (m) => (Option.isSome(m) ? m.value.attempted(exit) : Effect.void))

export const cycle = Effect.gen(function* () {
  const cfg = yield* AgentConfig
  const log = yield* AgentLog
  const registry = yield* RegistryClient
  const cache = yield* Cache
  const unpacker = yield* Unpacker
  const state = yield* StateFile
  const gate = yield* RetryGate

  const current = Option.getOrUndefined(yield* state.read)
  const failed = yield* state.readFailed
  const retryRequested = yield* gate.takeRequest
  yield* log.debug(`polling ${cfg.host}:${cfg.port} for configuration ${cfg.name}`)

  // The connection lives only while we talk to the registry: fetch, then the missing blobs.
  const { doc, held, judged } = yield* Effect.scoped(
    Effect.gen(function* () {
      const session = yield* registry.connect
      const doc = yield* session.document(cfg.name)
      if (current?.Hash === doc.Hash) return { doc, held: Option.none(), judged: undefined }
      // -trust (TrustPolicy.ts): a state without enough trusted signatures is not even downloaded.
      const judged = yield* checkTrust(cfg.trust, cfg.state, doc, session.signatures(cfg.name, doc.Hash))
      if (judged?._tag === "Refused") return { doc, held: Option.none(), judged }
      // A hash that failed and was switched back is not downloaded again until RetryGate allows it.
      const held = yield* gate.holds(failed, doc.Hash, retryRequested)
      if (Option.isSome(held)) return { doc, held, judged }
      yield* log.info(
        `configuration ${cfg.name} changed: ${current?.Hash ?? "(none)"} -> ${doc.Hash} (${doc.Layers.map(label).join(", ") || "no layers"})`
      )
      yield* reported((r) => r.deploying(doc.Hash))
      const wanted = new Map(doc.Layers.map((l) => [l.Hash as string, label(l)]))
      const missing: Array<[string, string]> = []
      for (const [hash, name] of wanted) {
        if (yield* cache.has(hash)) yield* log.debug(`layer ${name} (${hash}) is cached`)
        else missing.push([hash, name])
      }
      yield* Effect.forEach(
        missing,
        ([hash, name]) =>
          Effect.gen(function* () {
            yield* log.info(`downloading layer ${name} (${hash})`)
            const start = yield* Clock.currentTimeMillis
            yield* cache.store(hash, (sink) => session.download(hash as Sha256, countingBytes(sink)))
            const ms = (yield* Clock.currentTimeMillis) - start
            yield* log.debug(`downloaded layer ${name} in ${ms} ms`)
          }),
        { concurrency: 3, discard: true }
      )
      return { doc, held, judged }
    })
  )
  if (judged?._tag === "Refused") {
    yield* log.warn(`refused configuration ${cfg.name} ${doc.Hash}: ${judged.reason}: ${judged.detail}; staying on ${current?.Hash ?? "(none)"}`)
    return new Refused({ hash: doc.Hash, current: current?.Hash, reason: judged.reason, detail: judged.detail }) as CycleResult
  }
  // The registry serves another hash than the failed one: the configuration changed again, so the
  // failed hash will be tried should it come back.
  if (current !== undefined && Option.isSome(failed) && failed.value.Hash !== doc.Hash) yield* state.write(current)
  if (current?.Hash === doc.Hash) {
    yield* log.debug(`configuration ${cfg.name} is up to date (${doc.Hash})`)
    yield* housekeeping(doc, cache.previous)
    return new Unchanged({ hash: doc.Hash }) as CycleResult
  }
  if (Option.isSome(held)) {
    yield* log.debug(
      `configuration ${cfg.name} ${doc.Hash} ${held.value.Outcome} at ${held.value.Time.toISOString()}; not retried until it changes, SIGHUP or -retry-failed`
    )
    return new Held({ hash: doc.Hash, current: current?.Hash, record: held.value }) as CycleResult
  }
  if (Option.isSome(failed) && failed.value.Hash === doc.Hash) yield* log.info(`retrying configuration ${cfg.name} ${doc.Hash} (${failed.value.Outcome} at ${failed.value.Time.toISOString()})`)

  const { root, reused } = yield* timed(
    unpackSeconds,
    unpacker.prepare(doc.Hash, doc.Layers.map((l) => ({ label: label(l), file: cache.path(l.Hash) })))
  )
  yield* log.info(reused ? `reusing unpacked tree ${root}` : `unpacked ${doc.Layers.length} layer(s) into ${root}`)

  const switchedBack = yield* timed(scriptSeconds, deployOrSwitchBack(doc, root, current))
  if (switchedBack !== undefined) return switchedBack as CycleResult
  // Recorded before the state moves on, so a crash in between cannot lose the rollback's blobs.
  const previous = blobsOf(current)
  yield* cache.setPrevious(previous).pipe(Effect.catchAll((e) => log.warn(e.message)))
  // Before the state: a crash in between leaves a newer bar, never an older one (no downgrade window).
  if (judged !== undefined) yield* recordSignedAt(cfg.state, judged.signedAt)
  yield* state.write(doc)
  yield* log.info(`deployed configuration ${cfg.name} ${doc.Hash}${judged ? ` (signed by ${judged.signers.join(", ")})` : ""}`)

  // The switch is done; housekeeping failures are warnings, not a failed deploy.
  yield* housekeeping(doc, Effect.succeed(previous))
  return new Deployed({ hash: doc.Hash, previous: current?.Hash }) as CycleResult
})

/**
 * When to poll next, given how the last cycle ended: after a success, `poll` plus up to `jitter`;
 * after n consecutive failures, `poll × 2^(n-1)` capped at `poll × 10`, plus the same jitter.
 * The output is the delay.
 */
export const agentSchedule = (poll: Duration.DurationInput, jitter: Duration.DurationInput) => {
  const pollMs = Duration.toMillis(Duration.decode(poll))
  const jitterMs = Duration.toMillis(Duration.decode(jitter))
  return Schedule.makeWithState(0, (now, input: Exit.Exit<unknown, unknown>, failures: number) =>
    Effect.gen(function* () {
      const next = Exit.isSuccess(input) ? 0 : failures + 1
      const base = next === 0 ? pollMs : Math.min(pollMs * 2 ** (next - 1), pollMs * 10)
      const delay = Math.round(base + (jitterMs > 0 ? yield* Random.nextRange(0, jitterMs) : 0))
      return [next, Duration.millis(delay), ScheduleDecision.continueWith(ScheduleInterval.after(now + delay))] as const
    })
  )
}

export interface LoopOptions {
  /** Completes when a poll should happen at once (SIGHUP). */
  readonly wake: Effect.Effect<void>
  /** Wait before the first poll (spreads a fleet's restarts). */
  readonly firstDelay: Duration.DurationInput
  readonly jitter: Duration.DurationInput
}

/** Runs cycles forever on `agentSchedule`; only interruption ends it. */
export const loop = (opts: LoopOptions) =>
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const log = yield* AgentLog
    const schedule = agentSchedule(cfg.poll, opts.jitter)
    let state = schedule.initial
    yield* Effect.race(Effect.sleep(opts.firstDelay), opts.wake)
    for (;;) {
      const started = yield* Clock.currentTimeMillis
      const exit = yield* Effect.exit(cycle)
      yield* reported((r) => r.attempt(exit, started))
      yield* metricsFile(exit)
      const now = yield* Clock.currentTimeMillis
      const [next, delay] = yield* schedule.step(now, exit, state)
      state = next
      // A stop (a signal: the fiber interrupted from outside) never gets here: Effect.exit does not catch
      // it. An interruption the exit holds came from within the cycle, and is a failure like any other:
      // re-raising it ended the agent with exit 0, which a supervisor's Restart=on-failure leaves stopped.
      if (Exit.isFailure(exit)) {
        yield* log.error(`cycle failed: ${describeCause(exit.cause)}; next attempt in ${(Duration.toMillis(delay) / 1000).toFixed(1)}s`)
        if (Cause.isDie(exit.cause)) yield* log.debug(Cause.pretty(exit.cause))
      }
      yield* Effect.race(Effect.sleep(delay), opts.wake)
    }
  })

/** -once: one cycle; true when the configuration is deployed (now or already). */
export const once = Effect.gen(function* () {
  const log = yield* AgentLog
  const exit = yield* Effect.exit(cycle)
  yield* metricsFile(exit)
  if (Exit.isSuccess(exit)) {
    const r = exit.value
    if (r._tag === "Unchanged") yield* log.info(`configuration is up to date (${r.hash})`)
    if (r._tag === "Held") yield* log.error(`configuration ${r.hash} ${r.record.Outcome} at ${r.record.Time.toISOString()}; not retried (SIGHUP or -retry-failed retries it)`)
    return r._tag === "Unchanged" || r._tag === "Deployed"
  }
  // As in loop: an interruption from within is a failed cycle (exit 1), not a stop (it was exit 0).
  yield* log.error(`cycle failed: ${describeCause(exit.cause)}`)
  return false
})
