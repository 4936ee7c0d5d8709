// Which replica drives the background work that must run once per database: the rollout driver and
// the janitor (docs/scale-out.md). SQLite: the one process always leads. PostgreSQL: the replica that
// holds a session-level advisory lock on a connection of its own leads; the others try again every
// `retryMs`. The lock goes with its connection: a replica that dies (kill -9, lost network) loses it as
// soon as the database sees the connection end, and another takes over. The holder checks its
// connection every `retryMs` and stops its work when the check fails (the database restarted).
import { SqlClient } from "@effect/sql"
import { Context, Duration, Effect, Layer, Stream, SubscriptionRef } from "effect"
import { isPostgres } from "./SqlDialect.js"

/** The advisory lock key every replica of a database contends for (any constant bigint). */
export const LEADER_LOCK = 0x64_65_70_6c_6f_79 // "deploy"

export class Leadership extends Context.Tag("registry/Leadership")<
  Leadership,
  {
    /** Whether this replica leads now. */
    readonly isLeader: Effect.Effect<boolean>
    /** Runs `work` while this replica leads: interrupted when leadership is lost, started again when regained. */
    readonly whileLeader: <E, R>(name: string, work: Effect.Effect<unknown, E, R>) => Effect.Effect<never, never, R>
  }
>() {}

/** The work, once and for as long as it runs (a failure is logged, not raised). */
const runOnce = <E, R>(name: string, work: Effect.Effect<unknown, E, R>): Effect.Effect<never, never, R> =>
  Effect.zipRight(work.pipe(Effect.catchAllCause((cause) => Effect.logError(`${name} stopped`, cause))), Effect.never)

/** One process: always the leader. */
export const LeadershipAlways = Layer.succeed(Leadership, Leadership.of({ isLeader: Effect.succeed(true), whileLeader: runOnce }))

export interface AdvisoryOptions {
  /** How often a follower tries the lock and the leader checks its connection (default 3 s). */
  readonly retryMs?: number
}

/** PostgreSQL: the advisory lock on a reserved connection; the loop runs while the layer lives. */
export const LeadershipAdvisory = (options: AdvisoryOptions = {}): Layer.Layer<Leadership, never, SqlClient.SqlClient> =>
  Layer.scoped(
    Leadership,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const retry = Duration.millis(options.retryMs ?? 3000)
      const leading = yield* SubscriptionRef.make(false)
      const until = (want: boolean) => leading.changes.pipe(Stream.filter((b) => b === want), Stream.take(1), Stream.runDrain)

      /** One connection: try the lock until it is ours, then hold it while the connection answers. */
      const term = Effect.scoped(
        Effect.gen(function* () {
          // Uninterruptible while it waits for the pool (bounded by its connect timeout): a connection handed
          // over to an interrupted fiber would never go back.
          const conn = yield* Effect.uninterruptible(sql.reserve)
          const query = (text: string) => conn.executeUnprepared(text, [], undefined)
          // Back in the pool, the connection must not keep the lock (nobody would lead).
          yield* Effect.addFinalizer(() => query("SELECT pg_advisory_unlock_all()").pipe(Effect.timeout("2 seconds"), Effect.ignore))
          for (;;) {
            const [row] = (yield* query(`SELECT pg_try_advisory_lock(${LEADER_LOCK}) AS locked`)) as ReadonlyArray<{ locked: boolean }>
            if (row?.locked === true) break
            yield* Effect.sleep(retry)
          }
          yield* Effect.logInfo("leadership: this replica leads (rollout driver, janitor)")
          yield* SubscriptionRef.set(leading, true)
          for (;;) {
            yield* Effect.sleep(retry)
            yield* query("SELECT 1")
          }
        })
      ).pipe(
        Effect.catchAllCause((cause) =>
          Effect.flatMap(SubscriptionRef.get(leading), (was) =>
            was
              ? Effect.zipRight(Effect.logWarning("leadership: lost (its database connection failed); trying again", cause), SubscriptionRef.set(leading, false))
              : Effect.void
          )
        ),
        Effect.zipRight(Effect.sleep(retry))
      )
      yield* Effect.forkScoped(Effect.forever(term))

      return Leadership.of({
        isLeader: SubscriptionRef.get(leading),
        whileLeader: (name, work) =>
          Effect.forever(
            Effect.zipRight(
              until(true),
              Effect.race(runOnce(name, work), until(false))
            )
          )
      })
    })
  )

/**
 * Runs `work` under the Leadership in context, or plainly without one (tests that build a service
 * without the registry's wiring).
 */
export const asLeader = <E, R>(name: string, work: Effect.Effect<unknown, E, R>): Effect.Effect<never, never, R> =>
  Effect.flatMap(Effect.serviceOption(Leadership), (l) =>
    l._tag === "Some" ? l.value.whileLeader(name, work) : runOnce(name, work)
  )

/** SQLite: always; PostgreSQL: the advisory lock. */
export const LeadershipLive = (options: AdvisoryOptions = {}): Layer.Layer<Leadership, never, SqlClient.SqlClient> =>
  Layer.unwrapEffect(Effect.map(SqlClient.SqlClient, (sql) => (isPostgres(sql) ? LeadershipAdvisory(options) : LeadershipAlways)))
