// Deploy outcomes by configuration and propagation time (commit → a host reports the hash deployed),
// recorded as reports arrive. Decorates HostStatus (its `report` is the one sink of agents' reports) the
// way ChangeFeedStorage decorates Storage. Current states are kept in memory from the ChangeFeed, so
// recording stays synchronous (WatchSession calls `report` with runSync). Only configurations that exist
// become labels: an agent cannot mint label values by naming made-up configurations.
import { Effect, Layer, Metric, Queue } from "effect"
import { ChangeFeed } from "./ChangeFeed.js"
import { HostStatus } from "./HostStatus.js"
import { deployOutcomes, propagationSeconds } from "./RegistryMetrics.js"
import { Storage } from "./Storage.js"

export const ReportMetricsHostStatus = Layer.scoped(
  HostStatus,
  Effect.gen(function* () {
    const inner = yield* HostStatus
    const storage = yield* Storage
    const feed = yield* ChangeFeed
    const current = new Map<string, { readonly hash: string; readonly time: number }>()
    // Subscribed before the read, so no change falls between them.
    const changes = yield* feed.subscribe
    const reload = Effect.map(Effect.orElseSucceed(storage.currentStates, () => []), (states) => {
      current.clear()
      for (const s of states) current.set(s.configuration, { hash: s.hash, time: s.time.getTime() })
    })
    yield* reload
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.flatMap(Queue.take(changes), (e) =>
          e._tag === "Resync" ? reload
            : Effect.sync(() => {
                if (e._tag === "State") current.set(e.name, { hash: e.hash, time: e.time.getTime() })
                else if (e._tag === "Deleted") current.delete(e.name)
              })
        )
      )
    )
    return HostStatus.of({
      ...inner,
      report: (r, link) =>
        Effect.zipRight(
          Effect.sync(() => {
            const state = current.get(r.configuration)
            if (state === undefined) return
            deployOutcomes.pipe(Metric.tagged("configuration", r.configuration), Metric.tagged("outcome", r.outcome)).unsafeUpdate(1, [])
            if (r.outcome === "deployed" && r.hash === state.hash) {
              propagationSeconds.unsafeUpdate(Math.max(0, Date.now() - state.time) / 1000, [])
            }
          }),
          inner.report(r, link)
        )
    })
  })
)
