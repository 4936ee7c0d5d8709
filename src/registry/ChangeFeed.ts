// Commits → events: every change of a configuration's current state (addconf, changeconf, bumpconf,
// replaceconf, rollback, delconf) is published once its transaction has committed, for the watch
// sessions (WatchSession.ts). The feed decorates Storage (ChangeFeedStorage), so no command path can
// change a state without an event, and Storage itself stays unaware of watchers.
import { Context, Effect, Layer, PubSub, type Queue, type Scope } from "effect"
import type { Sha256 } from "../domain/Names.js"
import { type Change, type StateInfo, Storage } from "./Storage.js"

/**
 * A configuration's new current state, its deletion, (Served) a rollout step that changed which
 * hosts are served which state (watchers ask Rollouts what their host gets now), or (Signed) a new
 * signature of a state. Resync: events may have been missed (PgChangeFeed.ts: the LISTEN connection
 * was renewed); every subscriber reads again what it keeps. Events carry names and hashes, not
 * documents (they cross replicas as NOTIFY payloads).
 */
export type ChangeEvent =
  | { readonly _tag: "State"; readonly name: string; readonly hash: Sha256; readonly time: Date }
  | { readonly _tag: "Deleted"; readonly name: string }
  | { readonly _tag: "Served"; readonly name: string }
  /** A signature was attached to the state with `hash` (Signatures.ts): its watchers are sent it again. */
  | { readonly _tag: "Signed"; readonly name: string; readonly hash: Sha256 }
  | { readonly _tag: "Resync" }

export class ChangeFeed extends Context.Tag("registry/ChangeFeed")<
  ChangeFeed,
  {
    readonly publish: (e: ChangeEvent) => Effect.Effect<void>
    /** Events published from now on, until the scope closes. */
    readonly subscribe: Effect.Effect<Queue.Dequeue<ChangeEvent>, never, Scope.Scope>
  }
>() {}

/** One process (SQLite): an in-process PubSub. Replicas on PostgreSQL use PgChangeFeed.ts. */
export const ChangeFeedLive = Layer.scoped(
  ChangeFeed,
  Effect.gen(function* () {
    // Unbounded: a publisher (a command) never waits for a slow watcher; each watcher bounds its own
    // channel instead (WatchSession closes one that stops reading).
    const hub = yield* Effect.acquireRelease(PubSub.unbounded<ChangeEvent>(), PubSub.shutdown)
    return { publish: (e) => Effect.asVoid(PubSub.publish(hub, e)), subscribe: PubSub.subscribe(hub) }
  })
)

const stateEvent = (s: StateInfo): ChangeEvent => ({ _tag: "State", name: s.configuration, hash: s.hash, time: s.time })

/**
 * Storage whose changing methods publish after they return, i.e. after their transaction committed.
 * (Called inside an outer `transaction`, the event would precede that commit; no command does so.)
 */
export const ChangeFeedStorage = Layer.effect(
  Storage,
  Effect.gen(function* () {
    const inner = yield* Storage
    const feed = yield* ChangeFeed
    const changed = (c: Change) => (c.changed ? feed.publish(stateEvent(c.after)) : Effect.void)
    return Storage.of({
      ...inner,
      addConfiguration: (...a) => Effect.tap(inner.addConfiguration(...a), (s) => feed.publish(stateEvent(s))),
      changeConfiguration: (...a) => Effect.tap(inner.changeConfiguration(...a), changed),
      bumpConfiguration: (...a) => Effect.tap(inner.bumpConfiguration(...a), changed),
      replaceConfiguration: (...a) => Effect.tap(inner.replaceConfiguration(...a), changed),
      rollback: (...a) => Effect.tap(inner.rollback(...a), changed),
      deleteConfiguration: (name) => Effect.tap(inner.deleteConfiguration(name), () => feed.publish({ _tag: "Deleted", name }))
    })
  })
)
