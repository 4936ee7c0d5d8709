// HostStatus (coalesced writes, live sessions, poll-only hosts) over a real in-memory SQLite, and the
// states StatusView derives from its rows.
import { SqlClient } from "@effect/sql"
import { it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { describe, expect } from "vitest"
import type { Sha256 } from "../../src/domain/Names.js"
import { Report } from "../../src/domain/Report.js"
import { type HostRow, HostStatus, HostStatusLive } from "../../src/registry/HostStatus.js"
import { migrate } from "../../src/registry/Migrations.js"
import { SqlMemory } from "../../src/registry/Sql.js"
import { stateOf } from "../../src/registry/StatusView.js"
import { countTransactions } from "../support/countTransactions.js"

const h1 = "1".repeat(64) as Sha256
const h2 = "2".repeat(64) as Sha256

/** HostStatus over a migrated in-memory database whose transactions are counted. */
const counted = (counter: { transactions: number }) => {
  const countingSql = Layer.effect(
    SqlClient.SqlClient,
    Effect.map(SqlClient.SqlClient, (sql) => countTransactions(sql, counter))
  ).pipe(Layer.provide(SqlMemory))
  const migrated = Layer.effectDiscard(Effect.orDie(migrate)).pipe(Layer.provideMerge(SqlMemory))
  return HostStatusLive.pipe(Layer.provide(countingSql), Layer.provide(migrated))
}

const report = (host: string, hash: Sha256 | "", outcome: Report["outcome"] = "deployed", target?: Sha256) =>
  new Report({ host, agentVersion: "0.1.0", configuration: "p", hash, outcome, ...(target ? { target } : {}) })

const link = { fingerprint: "SHA256:k", address: "10.0.0.1" }

describe("HostStatus", () => {
  it.scoped("5,000 reports at once are written in a few transactions, the last one per host kept", () => {
    const counter = { transactions: 0 }
    return Effect.gen(function* () {
      const hosts = yield* HostStatus
      for (let i = 0; i < 5000; i++) yield* hosts.report(report(`h${i}`, h1), link)
      for (let i = 0; i < 5000; i++) yield* hosts.report(report(`h${i}`, h2), link)
      const rows = yield* hosts.rows("p")
      expect(rows).toHaveLength(5000)
      expect(rows.every((r) => r.hash === h2 && r.kind === "agent" && !r.connected)).toBe(true)
      expect(counter.transactions).toBeLessThanOrEqual(5)
    }).pipe(Effect.provide(counted(counter)))
  })

  it.scopedLive("a watch session is live while its scope is open; a poll-only read is recorded by key, since kept while the hash stays", () => {
    const counter = { transactions: 0 }
    return Effect.gen(function* () {
      const hosts = yield* HostStatus
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* hosts.attach({ ...link, host: "web1", configuration: "p", version: "0.1.0" })
          expect((yield* hosts.rows("p"))[0]).toMatchObject({ host: "web1", connected: true, agentVersion: "0.1.0" })
        })
      )
      expect((yield* hosts.rows("p"))[0]).toMatchObject({ host: "web1", connected: false })

      yield* hosts.documentRead({ fingerprint: "SHA256:old", address: "10.0.0.2" }, "p", h1)
      const first = (yield* hosts.rows("p")).find((r) => r.kind === "poll")!
      expect(first).toMatchObject({ host: "SHA256:old", address: "10.0.0.2", hash: h1 })
      yield* Effect.sleep("5 millis")
      yield* hosts.documentRead({ fingerprint: "SHA256:old", address: "10.0.0.2" }, "p", h1)
      const again = (yield* hosts.rows("p")).find((r) => r.kind === "poll")!
      expect(again.since).toBe(first.since)
      expect(again.lastSeen >= first.lastSeen).toBe(true)
      // A connection that watches is not a poll-only host.
      yield* hosts.documentRead({ ...link, host: "web1" }, "p", h1)
      expect((yield* hosts.rows("p")).filter((r) => r.kind === "poll")).toHaveLength(1)

      expect(yield* hosts.forget("p", "SHA256:old")).toBe(true)
      expect(yield* hosts.forget("p", "SHA256:old")).toBe(false)
      expect(Option.isNone(Option.fromNullable((yield* hosts.rows("p")).find((r) => r.kind === "poll")))).toBe(true)
    }).pipe(Effect.provide(counted(counter)))
  })
})

describe("status states", () => {
  const row = (r: Partial<HostRow>): HostRow => ({
    configuration: "p", host: "h", kind: "agent", fingerprint: "", address: "", agentVersion: "", hash: "", target: "", outcome: "",
    reason: "", lines: [], started: "", durationMs: 0, since: "", lastReport: "", lastSeen: "", connected: true, ...r
  })
  it("current, behind, deploying, failed, offline; poll-only hosts by the hash served", () => {
    expect(stateOf(row({ hash: h1, outcome: "deployed" }), h1)).toBe("current")
    expect(stateOf(row({ hash: h1, outcome: "deployed" }), h2)).toBe("behind")
    expect(stateOf(row({ hash: h1, outcome: "deploying", target: h2 }), h2)).toBe("deploying")
    for (const outcome of ["failed", "unpack-refused", "download-failed", "rolled-back", "refused"]) {
      expect(stateOf(row({ hash: h1, outcome, target: h2 }), h2), outcome).toBe("failed")
    }
    // A failure at an older target is history: the host is behind the new current state.
    expect(stateOf(row({ hash: h1, outcome: "failed", target: h1 }), h2)).toBe("behind")
    expect(stateOf(row({ hash: h2, outcome: "deployed", connected: false }), h2)).toBe("offline")
    expect(stateOf(row({ kind: "poll", hash: h2, connected: false }), h2)).toBe("current")
    expect(stateOf(row({ kind: "poll", hash: h1, connected: false }), h2)).toBe("behind")
  })
})
