// The ChangeFeed across replicas on PostgreSQL (docs/scale-out.md): an event published on one replica
// reaches the watchers of every replica through LISTEN/NOTIFY on one channel.
//
// - Local subscribers get the event at once, as with SQLite; other replicas get it from the channel
//   (each ignores what it sent itself). NOTIFYs leave in order through one sender fiber, so a command
//   never waits on them and two changes arrive in the order they were committed.
// - Any ChangeEvent kind is carried (JSON; Dates kept as Dates): events hold names and hashes, never
//   documents. One that would not fit PostgreSQL's 8000-byte payload is sent as a resync instead.
// - The LISTEN connection is this feed's own (PgConnection.ts limits). It is renewed at once when it
//   ends or errs (a database restart), and when a ping this replica sends itself on the channel every
//   `pingMs` has not come back for three intervals (a connection that looks open but delivers nothing);
//   while the database is away a new one is tried every `pingMs`. Once renewed, it publishes Resync
//   locally: whatever was sent meanwhile is read again by the watchers instead of being missed.
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Duration, Effect, Exit, Layer, PubSub, Queue, Redacted, Schedule } from "effect"
import { randomBytes } from "node:crypto"
import { ChangeFeed, type ChangeEvent, ChangeFeedLive } from "./ChangeFeed.js"
import { clientConfig, identifier, RegistryPgClient } from "./PgConnection.js"

/** The one channel of every replica on a database. */
export const CHANNEL = "deploy_registry_changes"
/** PostgreSQL refuses payloads of 8000 bytes or more; ours stay below with room to spare. */
export const MAX_PAYLOAD = 7900

type Wire = { readonly o: string; readonly e?: unknown; readonly resync?: true; readonly ping?: number }

const DATE = "$date"

/** JSON of any event kind; a Date field stays a Date on the other side. */
export const encodeEvent = (e: ChangeEvent): unknown =>
  JSON.parse(JSON.stringify(e, function (this: Record<string, unknown>, key, value) {
    const raw = this[key]
    return raw instanceof Date ? { [DATE]: raw.toISOString() } : value
  }))

export const decodeEvent = (e: unknown): ChangeEvent =>
  JSON.parse(JSON.stringify(e), (_key, value) =>
    value !== null && typeof value === "object" && Object.keys(value).length === 1 && typeof value[DATE] === "string" ? new Date(value[DATE]) : value
  ) as ChangeEvent

/** The payload for `e`, or a resync when it would not fit (a later event kind with long fields). */
export const payloadOf = (origin: string, e: ChangeEvent): string => {
  const text = JSON.stringify({ o: origin, e: encodeEvent(e) } satisfies Wire)
  return Buffer.byteLength(text) < MAX_PAYLOAD ? text : JSON.stringify({ o: origin, resync: true } satisfies Wire)
}

export interface PgChangeFeedOptions {
  /** How often the LISTEN connection is checked (default 1 s; it is renewed after 3 silent intervals). */
  readonly pingMs?: number
}

export const PgChangeFeedLive = (options: PgChangeFeedOptions = {}): Layer.Layer<ChangeFeed, never, PgClient.PgClient> =>
  Layer.scoped(
    ChangeFeed,
    Effect.gen(function* () {
      const pg = yield* PgClient.PgClient
      const pingMs = options.pingMs ?? 1000
      const origin = randomBytes(8).toString("hex")
      // pg_notify, not PgClient.notify: that sends `NOTIFY chan, $1`, which PostgreSQL refuses (no parameters there).
      const notify = (payload: string) => Effect.asVoid(pg`SELECT pg_notify(${CHANNEL}, ${payload})`)
      const hub = yield* Effect.acquireRelease(PubSub.unbounded<ChangeEvent>(), PubSub.shutdown)
      const local = (e: ChangeEvent) => Effect.asVoid(PubSub.publish(hub, e))
      const outbox = yield* Queue.unbounded<string>()

      // One sender, in order; a database that is away gets a few tries (its replicas resync when it is back).
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.flatMap(Queue.take(outbox), (payload) =>
            notify(payload).pipe(
              Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(6)))),
              Effect.catchAllCause((cause) => Effect.logWarning("change feed: NOTIFY failed; other replicas resync when their LISTEN is renewed", cause))
            )
          )
        )
      )

      let sessions = 0
      /** Whether the last attempt failed (the database is away: one warning, not one per second). */
      let failing = false
      /**
       * One LISTEN connection of our own (not the pool's, not PgClient.listen's, which keeps quiet when its
       * connection fails): from LISTEN until the connection ends or errs, or three pings in a row did not
       * come back (a connection that looks open but no longer delivers).
       */
      const listenSession = Effect.scoped(
        Effect.gen(function* () {
          const url = pg.config.url
          if (url === undefined) return yield* Effect.dieMessage("change feed: the PgClient has no URL")
          // Uninterruptible while it connects (acquireRelease), bounded by CONNECT_MS; closed with the session.
          const client = yield* Effect.acquireRelease(
            Effect.tryPromise(async () => {
              const c = new RegistryPgClient(clientConfig(Redacted.value(url)))
              await c.connect().catch((e: unknown) => {
                void c.end().catch(() => undefined)
                throw e
              })
              return c
            }),
            (c) => Effect.promise(() => c.end().catch(() => undefined)).pipe(Effect.timeoutOption("1 second"))
          )
          const lost = yield* Deferred.make<void>()
          const payloads = yield* Queue.unbounded<string>()
          client.on("notification", (msg: { readonly channel: string; readonly payload?: string }) => {
            if (msg.channel === CHANNEL && msg.payload) Queue.unsafeOffer(payloads, msg.payload)
          })
          client.once("error", () => Deferred.unsafeDone(lost, Exit.void))
          client.once("end", () => Deferred.unsafeDone(lost, Exit.void))
          yield* Effect.tryPromise(() => client.query(`LISTEN ${identifier(CHANNEL)}`))

          let heard = Date.now()
          let up = false
          const onPayload = (text: string) => {
            let w: Wire
            try {
              w = JSON.parse(text) as Wire
            } catch {
              return Effect.void
            }
            if (w.o === origin) {
              if (w.ping !== undefined) heard = Date.now()
              if (w.ping === undefined || up) return Effect.void
              up = true
              failing = false
              // The first ping back proves the LISTEN; then watchers read again what they may have missed.
              return Effect.zipRight(sessions++ === 0 ? Effect.void : Effect.logInfo("change feed: LISTEN renewed; watchers resync"), local({ _tag: "Resync" }))
            }
            if (w.resync === true) return local({ _tag: "Resync" })
            return w.e === undefined ? Effect.void : local(decodeEvent(w.e))
          }
          yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(payloads), onPayload)))
          const pings = Effect.gen(function* () {
            let n = 0
            for (;;) {
              yield* notify(JSON.stringify({ o: origin, ping: ++n } satisfies Wire)).pipe(Effect.ignore)
              yield* Effect.sleep(Duration.millis(pingMs))
              if (Date.now() - heard > 3 * pingMs) return yield* Effect.logWarning("change feed: no ping back on the LISTEN connection; renewing it")
            }
          })
          yield* Effect.raceFirst(pings, Effect.zipRight(Deferred.await(lost), Effect.logWarning("change feed: the LISTEN connection failed; renewing it")))
        })
      ).pipe(
        Effect.catchAllCause((cause) =>
          failing ? Effect.void : Effect.zipRight(Effect.sync(() => (failing = true)), Effect.logWarning("change feed: LISTEN failed; retrying every ping interval", cause))
        )
      )
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(listenSession, Effect.sleep(Duration.millis(pingMs)))))

      return ChangeFeed.of({
        publish: (e) => Effect.zipRight(local(e), Queue.offer(outbox, payloadOf(origin, e))),
        subscribe: PubSub.subscribe(hub)
      })
    })
  )

/** The feed for the registry's database: across replicas on PostgreSQL, in-process on SQLite. */
export const ChangeFeedFor = (options: PgChangeFeedOptions = {}): Layer.Layer<ChangeFeed, never, SqlClient.SqlClient> =>
  Layer.unwrapEffect(
    Effect.map(SqlClient.SqlClient, (sql) =>
      PgClient.TypeId in sql ? PgChangeFeedLive(options).pipe(Layer.provide(Layer.succeed(PgClient.PgClient, sql as PgClient.PgClient))) : ChangeFeedLive
    )
  )
