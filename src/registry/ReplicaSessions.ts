// Which replica holds each agent's watch session, for HostStatus's "connected" on PostgreSQL, where an
// agent may be connected to any replica (docs/scale-out.md). Each replica has a random id per start and
// writes a heartbeat (the database's clock) every `heartbeatMs`; a session row names its replica. A
// host counts as connected elsewhere while a replica whose heartbeat is fresh (within `timeoutMs`) holds
// its session: the sessions of a replica that died (kill -9) stop counting after that timeout, and the
// rows of replicas silent for 10 timeouts are removed. SQLite has one process: none of this (undefined).
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import { isPostgres } from "./SqlDialect.js"

export interface ReplicaSessions {
  /** This replica's id. */
  readonly me: string
  /** Records this replica's session of `host` on `configuration` (inside HostStatus's write transaction). */
  readonly attach: (configuration: string, host: string) => Effect.Effect<void, SqlError>
  /** Its last session there ended. */
  readonly detach: (configuration: string, host: string) => Effect.Effect<void, SqlError>
  /** `configuration\0host` of sessions held by other live replicas (of one configuration, or all). */
  readonly elsewhere: (configuration?: string) => Effect.Effect<ReadonlySet<string>, SqlError>
}

export interface ReplicaSessionsOptions {
  readonly heartbeatMs?: number
  readonly timeoutMs?: number
}

const keyOf = (configuration: string, host: string) => `${configuration}\u0000${host}`

export const makeReplicaSessions = (
  options: ReplicaSessionsOptions = {}
): Effect.Effect<ReplicaSessions | undefined, SqlError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    if (!isPostgres(sql)) return undefined
    const me = randomBytes(8).toString("hex")
    const heartbeat = Duration.millis(options.heartbeatMs ?? 5000)
    const timeoutS = (options.timeoutMs ?? 15_000) / 1000
    // Tables `replicas` and `replica_sessions`: migration `replicas` (Migrations.ts), PostgreSQL only.
    const beat = Effect.gen(function* () {
      yield* sql`INSERT INTO replicas (id) VALUES (${me}) ON CONFLICT (id) DO UPDATE SET heartbeat = now()`
      const gone = sql`SELECT id FROM replicas WHERE heartbeat < now() - make_interval(secs => ${timeoutS * 10})`
      yield* sql`DELETE FROM replica_sessions WHERE replica IN (${gone})`
      yield* sql`DELETE FROM replicas WHERE heartbeat < now() - make_interval(secs => ${timeoutS * 10})`
    })
    yield* beat
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Effect.sleep(heartbeat), beat.pipe(Effect.catchAllCause((c) => Effect.logWarning("replica heartbeat failed", c)))))
    )
    // A clean stop: its sessions end now rather than after the timeout.
    yield* Effect.addFinalizer(() =>
      Effect.all([sql`DELETE FROM replica_sessions WHERE replica = ${me}`, sql`DELETE FROM replicas WHERE id = ${me}`]).pipe(Effect.timeout("2 seconds"), Effect.ignore)
    )
    return {
      me,
      attach: (configuration, host) =>
        Effect.asVoid(sql`INSERT INTO replica_sessions (configuration, host, replica) VALUES (${configuration}, ${host}, ${me}) ON CONFLICT DO NOTHING`),
      detach: (configuration, host) =>
        Effect.asVoid(sql`DELETE FROM replica_sessions WHERE configuration = ${configuration} AND host = ${host} AND replica = ${me}`),
      elsewhere: (configuration) =>
        Effect.map(
          sql<{ configuration: string; host: string }>`SELECT s.configuration, s.host FROM replica_sessions s JOIN replicas r ON r.id = s.replica
            WHERE s.replica <> ${me} AND r.heartbeat >= now() - make_interval(secs => ${timeoutS})
            ${configuration === undefined ? sql`` : sql`AND s.configuration = ${configuration}`}`,
          (rs) => new Set(rs.map((r) => keyOf(r.configuration, r.host)))
        )
    }
  })
