// Host changes as they happen: HostStatus publishes one when an agent's watch session opens or closes
// and when a report arrives (poll-only rows are left out: they change on every read). The operators'
// `events` stream (EventsSession.ts) and the timeline (Timeline.ts) subscribe. In memory only: what is
// durable is host_status itself.
import { Context, Effect, Layer, PubSub, type Queue, type Scope } from "effect"
import type { Report } from "../domain/Report.js"

export interface HostChange {
  readonly configuration: string
  readonly host: string
  /** A watch session of this host on this configuration is open after the change. */
  readonly connected: boolean
  /** Set when the change is a report. */
  readonly report?: Report
  readonly at: Date
}

export class HostEvents extends Context.Tag("registry/HostEvents")<
  HostEvents,
  {
    readonly publish: (c: HostChange) => Effect.Effect<void>
    /** Changes published from now on, until the scope closes. */
    readonly subscribe: Effect.Effect<Queue.Dequeue<HostChange>, never, Scope.Scope>
  }
>() {}

export const HostEventsLive = Layer.scoped(
  HostEvents,
  Effect.gen(function* () {
    // Unbounded for the same reason as ChangeFeed: a report never waits for a slow subscriber; each
    // subscriber of ours drains its queue at once (no I/O between takes).
    const hub = yield* Effect.acquireRelease(PubSub.unbounded<HostChange>(), PubSub.shutdown)
    return { publish: (c) => Effect.asVoid(PubSub.publish(hub, c)), subscribe: PubSub.subscribe(hub) }
  })
)
