// When a configuration hash recorded as failed (state file `Failed`) may be tried again: never at a
// plain poll or watch event; after SIGHUP (one request, taken by the next cycle), or once
// -retry-failed has passed since it failed. A different hash from the registry is always tried.
import { Clock, Context, Duration, Effect, Layer, Option, Ref } from "effect"
import type { FailedRecord } from "../domain/DeployOutcome.js"
import { AgentConfig } from "./AgentConfig.js"

export interface RetryGateService {
  /** SIGHUP: the next cycle may retry a failed hash. */
  readonly request: Effect.Effect<void>
  /** Taken once per cycle: whether a retry was requested since the last cycle. */
  readonly takeRequest: Effect.Effect<boolean>
  /** Whether `record` blocks deploying `hash` now (`requested`: from takeRequest). */
  readonly holds: (record: Option.Option<FailedRecord>, hash: string, requested: boolean) => Effect.Effect<Option.Option<FailedRecord>>
}

export class RetryGate extends Context.Tag("agent/RetryGate")<RetryGate, RetryGateService>() {}

export const makeRetryGate = (retryFailed: Duration.Duration | undefined) =>
  Effect.map(
    Ref.make(false),
    (pending): RetryGateService => ({
      request: Ref.set(pending, true),
      takeRequest: Ref.getAndSet(pending, false),
      holds: (record, hash, requested) =>
        Effect.gen(function* () {
          if (Option.isNone(record) || record.value.Hash !== hash || requested) return Option.none()
          if (retryFailed === undefined) return record
          const now = yield* Clock.currentTimeMillis
          return now - record.value.Time.getTime() >= Duration.toMillis(retryFailed) ? Option.none() : record
        })
    })
  )

export const RetryGateLive = Layer.effect(
  RetryGate,
  Effect.flatMap(AgentConfig, (cfg) => makeRetryGate(cfg.retryFailed))
)
