// The change feed as the watch sessions of one server see it (WatchSession.ts): one subscriber to the
// feed per server, which hands each event to the sessions of its configuration, with what the
// configuration serves now read ONCE for all of them (Rollouts.serving). Without it every session read
// its own document at every event: on PostgreSQL up to 3 statements per watcher (15,000 for a rollout
// step with 5,000 watchers); now 3 per replica.
//
// The read starts when the event is taken here, i.e. after its commit (events are published after
// their transaction, and a NOTIFY after its sender's commit): it sees the committed row even when the
// NOTIFY of another replica's step arrives before this replica's copy of the rollout is reloaded.
// Events of one configuration stay in order: a session awaits each event's read before the next.
import { Deferred, Effect, Queue, type Scope } from "effect"
import type { StorageError } from "../domain/Errors.js"
import { ChangeFeed, type ChangeEvent } from "./ChangeFeed.js"
import { Rollouts, type Serving } from "./Rollouts.js"

/** An event of the session's configuration (or a Resync), with the shared read when it needs one. */
export interface WatchUpdate {
  readonly event: ChangeEvent
  /**
   * What each host is served now, read once for every session of the configuration. Absent where the
   * event itself says it all: a deletion, a new current state without a live rollout.
   */
  readonly serving: Effect.Effect<Serving, StorageError> | undefined
}

export interface WatchFanout {
  /** Updates of configuration `name` from now on, until the scope closes. */
  readonly subscribe: (name: string) => Effect.Effect<Queue.Dequeue<WatchUpdate>, never, Scope.Scope>
}

/** Made once per server (SshServer.ts), with the server's scope: its fiber ends with it. */
export const makeWatchFanout: Effect.Effect<WatchFanout, never, ChangeFeed | Rollouts | Scope.Scope> = Effect.gen(function* () {
  const feed = yield* ChangeFeed
  const rollouts = yield* Rollouts
  const sessions = new Map<string, Set<Queue.Queue<WatchUpdate>>>()
  const events = yield* feed.subscribe

  /** One read of what `name` serves, started now, awaited by every session that gets the update. */
  const readOnce = (name: string) =>
    Effect.gen(function* () {
      const done = yield* Deferred.make<Serving, StorageError>()
      yield* Effect.forkScoped(Effect.flatMap(Effect.exit(rollouts.serving(name)), (exit) => Deferred.done(done, exit)))
      return Deferred.await(done)
    })

  // unsafeOffer: a session that just ended has a shut-down queue, which must not stop this fiber.
  const deliver = (name: string, qs: ReadonlySet<Queue.Queue<WatchUpdate>>, event: ChangeEvent) =>
    Effect.map(
      event._tag === "Deleted" || (event._tag === "State" && !rollouts.live(name)) ? Effect.succeed(undefined) : readOnce(name),
      (serving) => {
        for (const q of qs) q.unsafeOffer({ event, serving })
      }
    )

  yield* Effect.forkScoped(
    Effect.forever(
      Effect.flatMap(Queue.take(events), (e) => {
        if (e._tag === "Resync") return Effect.forEach([...sessions], ([name, qs]) => deliver(name, qs, e), { discard: true })
        const qs = sessions.get(e.name)
        return qs === undefined ? Effect.void : deliver(e.name, qs, e)
      })
    )
  )

  return {
    subscribe: (name) =>
      Effect.acquireRelease(
        Effect.flatMap(Queue.unbounded<WatchUpdate>(), (q) =>
          Effect.sync(() => {
            const qs = sessions.get(name) ?? new Set()
            qs.add(q)
            sessions.set(name, qs)
            return q
          })
        ),
        (q) =>
          Effect.suspend(() => {
            const qs = sessions.get(name)
            qs?.delete(q)
            if (qs?.size === 0) sessions.delete(name)
            return Queue.shutdown(q)
          })
      )
  }
})
