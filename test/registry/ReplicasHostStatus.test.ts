// HostStatus across replicas on one real PostgreSQL database: an agent's session held by one replica
// shows as connected on the others; when that replica stops it is offline at once, and when it dies
// without a word (no heartbeat), after the timeout.
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { HostStatus, HostStatusWith } from "../../src/registry/HostStatus.js"
import { SqlPostgres } from "../../src/registry/Sql.js"
import { StorageLive } from "../../src/registry/Storage.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"

const link = { fingerprint: "SHA256:x", address: "10.0.0.1", host: "web1", configuration: "p1", version: "0.1.0" }

describe.skipIf(postgresMissing() !== undefined)("HostStatus on replicas", () => {
  const pg = usePostgres()

  const replica = (url: string, options: { heartbeatMs: number; timeoutMs: number }) =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(HostStatusWith(options).pipe(Layer.provideMerge(StorageLive), Layer.provide(SqlPostgres(url))), scope)
      return { scope, hosts: Context.get(ctx, HostStatus) }
    })
  const connectedOn = (r: { hosts: HostStatus["Type"] }) =>
    Effect.map(r.hosts.rows("p1"), (rows) => rows.find((x) => x.host === "web1")?.connected)

  it.live("a session on one replica is connected on the others; offline when it stops, or after the timeout when it dies", () =>
    Effect.gen(function* () {
      const url = yield* Effect.promise(() => pg().createDatabase())
      const a = yield* replica(url, { heartbeatMs: 200, timeoutMs: 3000 })
      const b = yield* replica(url, { heartbeatMs: 200, timeoutMs: 3000 })
      const session = yield* Scope.make()
      yield* a.hosts.attach(link).pipe(Scope.extend(session))
      expect(yield* connectedOn(a)).toBe(true)
      expect(yield* connectedOn(b)).toBe(true)
      // The agent disconnects: offline everywhere.
      yield* Scope.close(session, Exit.void)
      expect(yield* connectedOn(a)).toBe(false)
      expect(yield* connectedOn(b)).toBe(false)

      // On a replica that stops cleanly: offline at once.
      yield* a.hosts.attach(link).pipe(Scope.extend(yield* Scope.make()))
      expect(yield* connectedOn(a)).toBe(true)
      expect(yield* connectedOn(b)).toBe(true)
      yield* Scope.close(a.scope, Exit.void)
      expect(yield* connectedOn(b)).toBe(false)

      // On a replica that dies: its heartbeat stops (here: a heartbeat of an hour), offline after the timeout.
      const c = yield* replica(url, { heartbeatMs: 3_600_000, timeoutMs: 3000 })
      yield* c.hosts.attach(link).pipe(Scope.extend(yield* Scope.make()))
      expect(yield* connectedOn(c)).toBe(true)
      expect(yield* connectedOn(b)).toBe(true)
      yield* Effect.sleep("4 seconds")
      expect(yield* connectedOn(b)).toBe(false)
      yield* Scope.close(b.scope, Exit.void)
    }), 60_000)
})
