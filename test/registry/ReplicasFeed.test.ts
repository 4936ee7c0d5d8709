// Replicas on one real PostgreSQL database (test/support/postgres.ts), each with its own pool as
// separate processes would have: the change feed crosses them (LISTEN/NOTIFY) and survives a restart
// of the database with a resync; one replica leads at a time and another takes over when it goes.
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Queue, Ref, Scope } from "effect"
import type { Sha256 } from "../../src/domain/Names.js"
import { ChangeFeed, type ChangeEvent } from "../../src/registry/ChangeFeed.js"
import { Leadership, LeadershipAdvisory } from "../../src/registry/Leadership.js"
import { ChangeFeedFor, decodeEvent, encodeEvent, payloadOf } from "../../src/registry/PgChangeFeed.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"

const hash = "ab".repeat(32) as Sha256

/** A replica's feed on `url`, with a subscription; closed with `scope`. */
const replicaFeed = (url: string, scope: Scope.Scope) =>
  Effect.gen(function* () {
    const ctx = yield* Layer.buildWithScope(ChangeFeedFor({ pingMs: 200 }).pipe(Layer.provide(SqlPostgres(url))), scope)
    const feed = Context.get(ctx, ChangeFeed)
    const events = yield* feed.subscribe.pipe(Scope.extend(scope))
    return { feed, events }
  })

/** The next event, or none within 10 s (the budget is far shorter: a failure here is a lost event). */
const next = (q: Queue.Dequeue<ChangeEvent>) => Queue.take(q).pipe(Effect.timeout("10 seconds"))

/** Skips resyncs (a LISTEN just proven) until a real event. */
const nextChange = (q: Queue.Dequeue<ChangeEvent>) =>
  Effect.gen(function* () {
    for (;;) {
      const e = yield* next(q)
      if (e._tag !== "Resync") return e
    }
  })

describe("the wire form of events", () => {
  it("keeps every kind and its Dates; an event too long for NOTIFY becomes a resync", () => {
    const state: ChangeEvent = { _tag: "State", name: "p1", hash, time: new Date("2026-12-03T10:00:00.123Z") }
    expect(decodeEvent(encodeEvent(state))).toEqual(state)
    for (const e of [{ _tag: "Deleted", name: "p" }, { _tag: "Served", name: "p" }, { _tag: "Resync" }] as Array<ChangeEvent>) {
      expect(decodeEvent(encodeEvent(e))).toEqual(e)
    }
    // A later kind (webserve's) with a long field: sent as a resync, never cut.
    const big = { _tag: "Report", name: "x".repeat(9000) } as unknown as ChangeEvent
    expect(JSON.parse(payloadOf("o1", big))).toEqual({ o: "o1", resync: true })
    expect(Buffer.byteLength(payloadOf("o1", state))).toBeLessThan(8000)
  })
})

describe.skipIf(postgresMissing() !== undefined)("replicas on PostgreSQL", () => {
  const pg = usePostgres()

  it.live("a change published on one replica reaches the other's watchers, once, in order; nothing lost over a database restart", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(() => pg().createDatabase())
      const scope = yield* Scope.make()
      const a = yield* replicaFeed(url, scope)
      const b = yield* replicaFeed(url, scope)
      // Both LISTENs proven (each sends its first Resync when its ping comes back).
      expect((yield* next(a.events))._tag).toBe("Resync")
      expect((yield* next(b.events))._tag).toBe("Resync")

      const events: Array<ChangeEvent> = [
        { _tag: "State", name: "p1", hash, time: new Date("2026-12-03T10:00:00.5Z") },
        { _tag: "Served", name: "p1" },
        { _tag: "Deleted", name: "p1" }
      ]
      for (const e of events) yield* a.feed.publish(e)
      for (const e of events) expect(yield* nextChange(b.events)).toEqual(e)
      // The publisher's own watchers get each once (not again from its NOTIFY).
      for (const e of events) expect(yield* next(a.events)).toEqual(e)
      yield* Effect.sleep("600 millis")
      expect(yield* Queue.size(a.events)).toBe(0)

      // The database restarts: both renew their LISTEN and tell their watchers to read again.
      yield* Effect.promise(() => pg().kill("SIGKILL"))
      yield* Effect.promise(() => pg().restart())
      expect((yield* next(b.events))._tag).toBe("Resync")
      expect((yield* next(a.events))._tag).toBe("Resync")
      const after: ChangeEvent = { _tag: "State", name: "p2", hash, time: new Date() }
      yield* b.feed.publish(after)
      expect(yield* nextChange(a.events)).toEqual(after)
      yield* Scope.close(scope, Exit.void)
    }), 90_000)

  it.live("one replica leads; when it goes, another takes over; a database restart moves leadership but keeps one leader", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(() => pg().createDatabase())
      const replica = (n: number) =>
        Effect.gen(function* () {
          const scope = yield* Scope.make()
          const ctx = yield* Layer.buildWithScope(LeadershipAdvisory({ retryMs: 200 }).pipe(Layer.provide(SqlPostgres(url))), scope)
          const leadership = Context.get(ctx, Leadership)
          const runs = yield* Ref.make(0)
          // The "work": counts while it runs (as the rollout driver ticks), stops when interrupted.
          yield* Effect.forkIn(leadership.whileLeader(`work ${n}`, Effect.forever(Effect.zipRight(Ref.update(runs, (x) => x + 1), Effect.sleep("50 millis")))), scope)
          return { n, scope, leadership, runs }
        })
      const replicas = [yield* replica(1), yield* replica(2), yield* replica(3)]
      const leaders = (rs: typeof replicas) => Effect.filter(rs, (r) => r.leadership.isLeader)
      const oneLeader = (rs: typeof replicas) =>
        Effect.gen(function* () {
          for (let i = 0; i < 100; i++) {
            const l = yield* leaders(rs)
            if (l.length === 1) return l[0]!
            yield* Effect.sleep("100 millis")
          }
          return yield* Effect.die(new Error("no single leader within 10 s"))
        })

      const first = yield* oneLeader(replicas)
      yield* Effect.sleep("500 millis")
      expect((yield* leaders(replicas)).map((r) => r.n)).toEqual([first.n])
      // Only the leader's work ran.
      for (const r of replicas) expect((yield* Ref.get(r.runs)) > 0).toBe(r === first)

      // The leader goes (its process ends: its connection, and with it the lock).
      yield* Scope.close(first.scope, Exit.void)
      const rest = replicas.filter((r) => r !== first)
      const second = yield* oneLeader(rest)
      const before = yield* Ref.get(second.runs)
      yield* Effect.sleep("300 millis")
      expect(yield* Ref.get(second.runs)).toBeGreaterThan(before)

      // The database restarts: the lock went with it; one of them leads again.
      yield* Effect.promise(() => pg().kill("SIGKILL"))
      yield* Effect.promise(() => pg().restart())
      yield* Effect.sleep("1 second")
      yield* oneLeader(rest)
      for (const r of rest) yield* Scope.close(r.scope, Exit.void)
    }), 90_000)
})
