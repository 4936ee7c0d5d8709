// What the registry knows about the hosts running each configuration: agents' reports and session
// times (table host_status, migration 2), which sessions are live now (memory), and what hosts that
// only poll read. Writes are queued and coalesced: one writer fiber takes everything queued and writes
// it in one transaction, so 5,000 agents reporting at once cost a few transactions, not 5,000.
// On SQLite, poll reads and session times wait up to WRITE_WINDOW for company (a transaction with its fsync per
// agent poll was a quarter of the registry's CPU per poll); a report, a read of the rows (`status`,
// `forget`, a rollout's step) and a clean stop write everything queued at once. A crash loses at most
// the last WRITE_WINDOW of poll reads and session times, never a report that was written.
// Replicas on PostgreSQL: a session held by another live replica counts as connected too (ReplicaSessions.ts).
import { SqlClient } from "@effect/sql"
import { Context, Deferred, Duration, Effect, Layer, Option, Queue, type Scope } from "effect"
import { StorageError } from "../domain/Errors.js"
import type { Report } from "../domain/Report.js"
import { type HostChange, HostEvents } from "./HostEvents.js"
import { makeReplicaSessions, type ReplicaSessionsOptions } from "./ReplicaSessions.js"
import { isPostgres } from "./SqlDialect.js"

/** Who is on one connection: the key, the address and, once it opened a watch, the host it says it is. */
export interface AgentLink {
  readonly fingerprint: string
  readonly address: string
  host?: string
  configuration?: string
  version?: string
}

export interface HostRow {
  readonly configuration: string
  readonly host: string
  readonly kind: "agent" | "poll"
  readonly fingerprint: string
  readonly address: string
  readonly agentVersion: string
  readonly hash: string
  readonly target: string
  readonly outcome: string
  readonly reason: string
  readonly lines: ReadonlyArray<string>
  readonly started: string
  readonly durationMs: number
  readonly since: string
  readonly lastReport: string
  readonly lastSeen: string
  /** A watch session of this host on this configuration is open now. */
  readonly connected: boolean
}

export class HostStatus extends Context.Tag("registry/HostStatus")<
  HostStatus,
  {
    /** A watch session: live until the scope closes (last seen is written then). */
    readonly attach: (link: Required<AgentLink>) => Effect.Effect<void, never, Scope.Scope>
    readonly report: (r: Report, link: AgentLink) => Effect.Effect<void>
    /** An agent read `/configs/<name>.json` and was served `hash` (recorded for hosts that only poll). */
    readonly documentRead: (link: AgentLink, configuration: string, hash: string) => Effect.Effect<void>
    /** Rows of one configuration (or all), after every queued write. */
    readonly rows: (configuration?: string) => Effect.Effect<ReadonlyArray<HostRow>, StorageError>
    /** Removes a host's row; false when there was none. */
    readonly forget: (configuration: string, host: string) => Effect.Effect<boolean, StorageError>
  }
>() {}

type Op =
  | { readonly _tag: "attach"; readonly link: Required<AgentLink>; readonly at: string }
  | { readonly _tag: "detach"; readonly configuration: string; readonly host: string; readonly at: string }
  | { readonly _tag: "report"; readonly r: Report; readonly link: AgentLink; readonly at: string }
  | { readonly _tag: "poll"; readonly link: AgentLink; readonly configuration: string; readonly hash: string; readonly at: string }

const keyOf = (configuration: string, host: string) => `${configuration}\u0000${host}`

/** Largest number of queued row writes; beyond it, poll reads are dropped (reports and sessions never are). */
const MAX_QUEUED = 100_000

/** How long a poll read or a session time may wait in memory for others to share its transaction. */
export const WRITE_WINDOW = Duration.seconds(1)

export interface HostStatusOptions extends ReplicaSessionsOptions {
  /** Default WRITE_WINDOW. */
  readonly writeWindow?: Duration.DurationInput
}

interface Row {
  readonly configuration: string
  readonly host: string
  readonly kind: string
  readonly fingerprint: string
  readonly address: string
  readonly agent_version: string
  readonly hash: string
  readonly target: string
  readonly outcome: string
  readonly reason: string
  readonly lines: string
  readonly started: string
  readonly duration_ms: number
  readonly since: string
  readonly last_report: string
  readonly last_seen: string
}

const parseLines = (s: string): ReadonlyArray<string> => {
  try {
    const v = JSON.parse(s) as unknown
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []
  } catch {
    return []
  }
}

export const make = (options: HostStatusOptions = {}) => Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const replicas = yield* makeReplicaSessions(options).pipe(
    Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("host status: sessions on other replicas will not show as connected", cause), undefined))
  )
  /** Live watch sessions per configuration and host (a host reconnecting may overlap its old session). */
  const live = new Map<string, number>()
  /** Queued writes by kind and row, in arrival order; a newer one of the same kind replaces the older. */
  let pending = new Map<string, Op>()
  let batchDone = yield* Deferred.make<void>()
  /** Completed to write the queued batch now instead of at the end of its window. */
  let cut = yield* Deferred.make<void>()
  const urge = Effect.suspend(() => Deferred.succeed(cut, undefined))
  // On PostgreSQL another replica reads these rows (a rollout started there waves over this replica's
  // hosts) and cannot flush this queue: nothing waits there (ReplicasFanout.test fails with a window).
  const window = options.writeWindow ?? (isPostgres(sql) ? Duration.zero : WRITE_WINDOW)
  const wake = yield* Queue.sliding<void>(1)
  const now = () => new Date().toISOString()
  // Published for `events` and the timeline when wired (main.ts); unit tests may leave it out.
  const events = yield* Effect.serviceOption(HostEvents)
  const changed = (c: Omit<HostChange, "at">) => Option.isSome(events) ? events.value.publish({ ...c, at: new Date() }) : Effect.void

  const enqueue = (op: Op, id: string) =>
    Effect.suspend(() => {
      if (op._tag === "poll" && pending.size >= MAX_QUEUED) return Effect.void
      pending.delete(id) // re-inserted at the end: order of arrival is kept per row
      pending.set(id, op)
      return Queue.offer(wake, undefined)
    })

  /** The row write, and on PostgreSQL which replica holds the session (the last one here ends it). */
  const write = (op: Op) =>
    replicas === undefined || (op._tag !== "attach" && op._tag !== "detach") ? writeRow(op)
      : Effect.zipRight(
          writeRow(op),
          op._tag === "attach" ? replicas.attach(op.link.configuration, op.link.host)
            : Effect.suspend(() => (live.has(keyOf(op.configuration, op.host)) ? Effect.void : replicas.detach(op.configuration, op.host)))
        )

  const writeRow = (op: Op) => {
    switch (op._tag) {
      case "attach":
        return sql`INSERT INTO host_status (configuration, host, kind, fingerprint, address, agent_version, since, last_seen)
          VALUES (${op.link.configuration}, ${op.link.host}, 'agent', ${op.link.fingerprint}, ${op.link.address}, ${op.link.version}, ${op.at}, ${op.at})
          ON CONFLICT (configuration, host) DO UPDATE SET kind = 'agent', fingerprint = excluded.fingerprint,
            address = excluded.address, agent_version = excluded.agent_version, last_seen = excluded.last_seen`
      case "detach":
        return sql`UPDATE host_status SET last_seen = ${op.at} WHERE configuration = ${op.configuration} AND host = ${op.host}`
      case "report": {
        const r = op.r
        return sql`INSERT INTO host_status (configuration, host, kind, fingerprint, address, agent_version, hash, target,
            outcome, reason, lines, started, duration_ms, since, last_report, last_seen)
          VALUES (${r.configuration}, ${r.host}, 'agent', ${op.link.fingerprint}, ${op.link.address}, ${r.agentVersion}, ${r.hash},
            ${r.target ?? ""}, ${r.outcome}, ${r.reason ?? ""}, ${JSON.stringify(r.lines ?? [])},
            ${r.started?.toJSON() ?? ""}, ${r.durationMs ?? 0}, ${op.at}, ${op.at}, ${op.at})
          ON CONFLICT (configuration, host) DO UPDATE SET kind = 'agent', fingerprint = excluded.fingerprint,
            address = excluded.address, agent_version = excluded.agent_version,
            since = CASE WHEN host_status.hash = excluded.hash THEN host_status.since ELSE excluded.since END,
            hash = excluded.hash, target = excluded.target, outcome = excluded.outcome, reason = excluded.reason,
            lines = excluded.lines, started = excluded.started, duration_ms = excluded.duration_ms,
            last_report = excluded.last_report, last_seen = excluded.last_seen`
      }
      case "poll":
        return sql`INSERT INTO host_status (configuration, host, kind, fingerprint, address, hash, since, last_seen)
          VALUES (${op.configuration}, ${op.link.fingerprint}, 'poll', ${op.link.fingerprint}, ${op.link.address}, ${op.hash}, ${op.at}, ${op.at})
          ON CONFLICT (configuration, host) DO UPDATE SET address = excluded.address,
            since = CASE WHEN host_status.hash = excluded.hash THEN host_status.since ELSE excluded.since END,
            hash = excluded.hash, last_seen = excluded.last_seen
          WHERE host_status.kind = 'poll'`
    }
  }

  /**
   * Takes everything queued (with the next batch's signals, in one step: a flush that sees a queued write
   * urges and awaits the batch that carries it) and writes it in one transaction. Not interruptible: a
   * stop waits for the batch under way. A failed batch is logged and dropped (the next report or
   * session rewrites the row); it never stops the writer.
   */
  const writeBatch = Effect.uninterruptible(
    Effect.flatMap(
      Effect.zip(Deferred.make<void>(), Deferred.make<void>()),
      ([nextDone, nextCut]) => {
        const ops = [...pending.values()]
        const done = batchDone
        pending = new Map()
        batchDone = nextDone
        cut = nextCut
        if (ops.length === 0) return Deferred.succeed(done, undefined)
        return sql.withTransaction(Effect.forEach(ops, write, { discard: true })).pipe(
          Effect.catchAllCause((cause) => Effect.logError(`host status: ${ops.length} write(s) lost`, cause)),
          Effect.zipRight(Deferred.succeed(done, undefined))
        )
      }
    )
  )
  // A clean stop writes what is still queued (sessions that ended with the server's connections
  // included): added before the writer is forked, so it runs after the writer has stopped.
  yield* Effect.addFinalizer(() => Effect.suspend(() => (pending.size === 0 ? Effect.void : writeBatch)))
  // The writer: after the first queued write, waits out the window (or an urge), then writes the batch.
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.zipRight(
        Effect.zipRight(Queue.take(wake), Effect.timeoutOption(Effect.suspend(() => Deferred.await(cut)), window)),
        writeBatch
      )
    )
  )

  /** Waits until what is queued now is written (at once, not at the end of the window). */
  const flush = Effect.suspend(() => (pending.size === 0 ? Effect.void : Effect.zipRight(urge, Deferred.await(batchDone))))

  const attach = (link: Required<AgentLink>) =>
    Effect.acquireRelease(
      Effect.suspend(() => {
        const k = keyOf(link.configuration, link.host)
        live.set(k, (live.get(k) ?? 0) + 1)
        return Effect.zipRight(
          enqueue({ _tag: "attach", link, at: now() }, `a${k}`),
          changed({ configuration: link.configuration, host: link.host, connected: true })
        )
      }),
      () =>
        Effect.suspend(() => {
          const k = keyOf(link.configuration, link.host)
          const n = (live.get(k) ?? 1) - 1
          if (n > 0) live.set(k, n)
          else live.delete(k)
          return Effect.zipRight(
            enqueue({ _tag: "detach", configuration: link.configuration, host: link.host, at: now() }, `d${k}`),
            changed({ configuration: link.configuration, host: link.host, connected: n > 0 })
          )
        })
    )

  // A report is written at once (with whatever else is queued): it is what an agent did.
  const report = (r: Report, link: AgentLink) =>
    Effect.zipRight(
      Effect.zipRight(enqueue({ _tag: "report", r, link, at: now() }, `r${keyOf(r.configuration, r.host)}`), urge),
      Effect.suspend(() => changed({ configuration: r.configuration, host: r.host, connected: live.has(keyOf(r.configuration, r.host)), report: r }))
    )

  const documentRead = (link: AgentLink, configuration: string, hash: string) =>
    link.host !== undefined ? Effect.void : enqueue({ _tag: "poll", link, configuration, hash, at: now() }, `p${keyOf(configuration, link.fingerprint)}`)

  const toRow = (elsewhere: ReadonlySet<string>) => (r: Row): HostRow => ({
    configuration: r.configuration,
    host: r.host,
    kind: r.kind === "poll" ? "poll" : "agent",
    fingerprint: r.fingerprint,
    address: r.address,
    agentVersion: r.agent_version,
    hash: r.hash,
    target: r.target,
    outcome: r.outcome,
    reason: r.reason,
    lines: parseLines(r.lines),
    started: r.started,
    durationMs: r.duration_ms,
    since: r.since,
    lastReport: r.last_report,
    lastSeen: r.last_seen,
    connected: r.kind !== "poll" && (live.has(keyOf(r.configuration, r.host)) || elsewhere.has(keyOf(r.configuration, r.host)))
  })
  const none: ReadonlySet<string> = new Set()

  const dbError = (cause: unknown) => new StorageError({ reason: "database failure", cause })

  const rows = (configuration?: string) =>
    flush.pipe(
      Effect.zipRight(
        configuration === undefined
          ? sql<Row>`SELECT * FROM host_status ORDER BY configuration, host`
          : sql<Row>`SELECT * FROM host_status WHERE configuration = ${configuration} ORDER BY host`
      ),
      Effect.flatMap((rs) => Effect.map(replicas === undefined ? Effect.succeed(none) : replicas.elsewhere(configuration), (e) => rs.map(toRow(e)))),
      Effect.mapError(dbError)
    )

  const forget = (configuration: string, host: string) =>
    flush.pipe(
      Effect.zipRight(sql<{ host: string }>`DELETE FROM host_status WHERE configuration = ${configuration} AND host = ${host} RETURNING host`),
      Effect.map((rs) => rs.length > 0),
      Effect.mapError(dbError)
    )

  return HostStatus.of({ attach, report, documentRead, rows, forget })
})

/** Requires SqlClient with the migrations applied (StorageLive runs them). */
export const HostStatusLive = Layer.scoped(HostStatus, make())

/** With the replica heartbeat and timeout, or the write window, given (tests). */
export const HostStatusWith = (options: HostStatusOptions) => Layer.scoped(HostStatus, make(options))
