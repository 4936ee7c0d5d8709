// What the operators' `events` exec streams (EventsSession.ts), rendered once for every subscriber:
// committed changes of configurations (ChangeFeed) and host changes (HostEvents) with the host's state
// as `status` computes it (StatusView.stateOf). One JSON object per line:
//   {"Event":"state","Name","Hash","Time"}  a configuration's new current state (Time RFC 3339, UTC)
//   {"Event":"deleted","Name"}               a configuration was deleted
//   {"Event":"served","Name"}                a rollout step changed what some hosts are served
//   {"Event":"host","Name","Host","State","Hash"}  a report, or a watch session opened or closed
// To compute a host's state without a read per event, the current hashes and each agent host's last
// report are kept here (loaded once, then followed; bounded by MAX_HOSTS).
import { Context, Effect, Layer, PubSub, Queue, type Scope } from "effect"
import { rfc3339Nano } from "../domain/Time.js"
import { ChangeFeed, type ChangeEvent } from "./ChangeFeed.js"
import { type HostChange, HostEvents } from "./HostEvents.js"
import { type HostRow, HostStatus } from "./HostStatus.js"
import { stateOf } from "./StatusView.js"
import { Storage } from "./Storage.js"

/** Hosts whose last report is kept; beyond, the oldest entry goes (its next event reads as not reported). */
const MAX_HOSTS = 200_000

export class OperatorEvents extends Context.Tag("registry/OperatorEvents")<
  OperatorEvents,
  {
    /** Event lines (each ending in "\n") from now on, until the scope closes. */
    readonly subscribe: Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
  }
>() {}

type Known = Pick<HostRow, "hash" | "target" | "outcome">

const keyOf = (configuration: string, host: string) => `${configuration}\u0000${host}`
const line = (v: unknown) => `${JSON.stringify(v)}\n`

export const changeLine = (e: ChangeEvent): string =>
  e._tag === "State" ? line({ Event: "state", Name: e.name, Hash: e.hash, Time: rfc3339Nano(e.time) })
    : e._tag === "Deleted" ? line({ Event: "deleted", Name: e.name })
    : e._tag === "Signed" ? line({ Event: "signed", Name: e.name, Hash: e.hash })
    // Events may have been missed (PgChangeFeed lost its LISTEN connection): readers read everything again.
    : e._tag === "Resync" ? line({ Event: "resync" })
    : line({ Event: "served", Name: e.name })

/** Requires ChangeFeed, HostEvents, HostStatus and Storage. */
export const OperatorEventsLive = Layer.scoped(
  OperatorEvents,
  Effect.gen(function* () {
    const feed = yield* ChangeFeed
    const hostEvents = yield* HostEvents
    const storage = yield* Storage
    const status = yield* HostStatus
    const out = yield* Effect.acquireRelease(PubSub.unbounded<string>(), PubSub.shutdown)

    // Subscribed before the reads, so nothing falls between them.
    const changes = yield* feed.subscribe
    const hostChanges = yield* hostEvents.subscribe
    const current = new Map<string, string>()
    const readCurrent = Effect.map(Effect.orElseSucceed(storage.currentStates, () => []), (states) => {
      current.clear()
      for (const s of states) current.set(s.configuration, s.hash)
    })
    yield* readCurrent
    const known = new Map<string, Known>()
    for (const r of yield* Effect.orElseSucceed(status.rows(), () => [])) {
      if (r.kind === "agent" && known.size < MAX_HOSTS) known.set(keyOf(r.configuration, r.host), { hash: r.hash, target: r.target, outcome: r.outcome })
    }

    const onChange = (e: ChangeEvent) => {
      if (e._tag === "State") current.set(e.name, e.hash)
      else if (e._tag === "Deleted") current.delete(e.name)
      return Effect.zipRight(e._tag === "Resync" ? readCurrent : Effect.void, PubSub.publish(out, changeLine(e)))
    }

    const onHost = (c: HostChange) => {
      const key = keyOf(c.configuration, c.host)
      if (c.report !== undefined) {
        known.delete(key) // re-inserted last: the map's order is the order of the latest reports
        known.set(key, { hash: c.report.hash, target: c.report.target ?? "", outcome: c.report.outcome })
        if (known.size > MAX_HOSTS) known.delete(known.keys().next().value!)
      }
      const k = known.get(key) ?? { hash: "", target: "", outcome: "" }
      const hash = current.get(c.configuration) ?? ""
      const row = { ...k, kind: "agent", connected: c.connected } as HostRow
      return PubSub.publish(out, line({ Event: "host", Name: c.configuration, Host: c.host, State: stateOf(row, hash), Hash: k.hash }))
    }

    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(changes), onChange)))
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(hostChanges), onHost)))
    return { subscribe: PubSub.subscribe(out) }
  })
)
