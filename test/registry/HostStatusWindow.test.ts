// HostStatus's write window: poll reads and session times wait in memory to share one transaction, yet
// `rows` (status, forget, a rollout's step) sees them at once, a report is written at once, and a clean
// stop writes whatever is still queued. Real in-memory SQLite; the window is driven by the TestClock.
import { SqlClient } from "@effect/sql"
import { it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope, TestClock } from "effect"
import { describe, expect } from "vitest"
import type { Sha256 } from "../../src/domain/Names.js"
import { Report } from "../../src/domain/Report.js"
import { HostStatus, HostStatusWith, WRITE_WINDOW } from "../../src/registry/HostStatus.js"
import { migrate } from "../../src/registry/Migrations.js"
import { SqlMemory } from "../../src/registry/Sql.js"
import { countTransactions } from "../support/countTransactions.js"

const h1 = "1".repeat(64) as Sha256
const poller = (i: number) => ({ fingerprint: `SHA256:p${i}`, address: `10.0.0.${i}` })
const link = { fingerprint: "SHA256:k", address: "10.0.1.1" }

/** The migrated database, its transactions counted, and HostStatus built in a scope of its own (to stop it). */
const setup = Effect.gen(function* () {
  const counter = { transactions: 0 }
  const ctx = yield* Layer.build(Layer.effectDiscard(Effect.orDie(migrate)).pipe(Layer.provideMerge(SqlMemory)))
  const sql = Context.get(ctx, SqlClient.SqlClient)
  const counting = countTransactions(sql, counter)
  const scope = yield* Scope.make()
  const hosts = Context.get(
    yield* Layer.buildWithScope(HostStatusWith({}).pipe(Layer.provide(Layer.succeed(SqlClient.SqlClient, counting))), scope),
    HostStatus
  )
  /** Rows as stored, bypassing HostStatus (and so its flush). */
  const stored = Effect.orDie(sql<{ host: string; kind: string; last_seen: string }>`SELECT host, kind, last_seen FROM host_status ORDER BY host`)
  /** Lets the writer fiber run as far as it can without the clock moving. */
  const settle = Effect.repeatN(Effect.yieldNow(), 50)
  return { counter, hosts, stored, settle, stop: Scope.close(scope, Exit.void) }
})

describe("HostStatus write window", () => {
  it.scoped("poll reads within the window share one transaction, written when the window ends", () =>
    Effect.gen(function* () {
      const { counter, hosts, stored, settle } = yield* setup
      for (let i = 0; i < 20; i++) {
        yield* hosts.documentRead(poller(i), "p", h1)
        yield* settle
      }
      expect(yield* stored).toHaveLength(0)
      expect(counter.transactions).toBe(0)
      yield* TestClock.adjust(WRITE_WINDOW)
      yield* settle
      expect(yield* stored).toHaveLength(20)
      expect(counter.transactions).toBe(1)
    }))

  it.scoped("rows and forget see queued writes at once, without waiting for the window", () =>
    Effect.gen(function* () {
      const { hosts } = yield* setup
      yield* hosts.documentRead(poller(1), "p", h1)
      yield* Effect.scoped(hosts.attach({ ...link, host: "web1", configuration: "p", version: "0.1.0" }))
      // The clock never moves in this test: only the flush can write them.
      const rows = yield* hosts.rows("p")
      expect(rows.map((r) => [r.host, r.kind, r.connected])).toEqual([["SHA256:p1", "poll", false], ["web1", "agent", false]])
      yield* hosts.documentRead(poller(2), "p", h1)
      expect(yield* hosts.forget("p", "SHA256:p2")).toBe(true)
    }))

  it.scoped("a report is written at once, with what was queued before it", () =>
    Effect.gen(function* () {
      const { counter, hosts, stored, settle } = yield* setup
      yield* hosts.documentRead(poller(1), "p", h1)
      yield* settle
      yield* hosts.report(new Report({ host: "web1", agentVersion: "0.1.0", configuration: "p", hash: h1, outcome: "deployed" }), link)
      yield* settle
      expect((yield* stored).map((r) => r.host)).toEqual(["SHA256:p1", "web1"])
      expect(counter.transactions).toBe(1)
    }))

  it.scoped("a clean stop writes what is still queued, the end of a session included", () =>
    Effect.gen(function* () {
      const { hosts, stored, settle, stop } = yield* setup
      const session = yield* Scope.make()
      yield* Scope.extend(hosts.attach({ ...link, host: "web1", configuration: "p", version: "0.1.0" }), session)
      yield* hosts.rows("p") // the session's start is written
      const started = (yield* stored)[0]!.last_seen
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5))) // row times are the wall clock's
      yield* Scope.close(session, Exit.void)
      yield* hosts.documentRead(poller(1), "p", h1)
      yield* settle
      expect(yield* stored).toHaveLength(1)
      yield* stop
      const rows = yield* stored
      expect(rows.map((r) => r.host)).toEqual(["SHA256:p1", "web1"])
      expect(rows[1]!.last_seen > started).toBe(true)
    }))
})
