// Staged rollouts (docs/rollouts.md "On the registry"): the `rollout` command, its storage (table
// rollouts, migrations 4 and 5; rows in RolloutStore.ts), which state each host is served, and the
// driver: one fiber on the leader, woken by reports and a timer, that moves every live rollout with
// RolloutPlan.step and stores each step, computed from the locked stored row, with its events, in one
// transaction (replicas: docs/scale-out.md). The target is a stored state from the start (pending: signable, never
// current); a rollout that completes makes it the configuration's current state.
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Queue } from "effect"
import { configHash } from "../domain/ConfigHash.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import {
  ConfigurationNotFound, DuplicateComponent, LayerNotFound, RolloutInProgress, RolloutRefused, StaleExpect, StorageError, VersionNotFound
} from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import type { Principal } from "../domain/Principal.js"
import { HostView, type RolloutEvent, type RolloutPhase, RolloutSpec, Tick, Pause, Resume, Abort } from "../domain/Rollout.js"
import type { RolloutCommand, RolloutTarget } from "../domain/RolloutCommand.js"
import { ChangeFeed } from "./ChangeFeed.js"
import { asLeader } from "./Leadership.js"
import { HostStatus, type HostRow } from "./HostStatus.js"
import { parseWaves, plan, served, step } from "./RolloutPlan.js"
import { rolloutEnded, setLiveRollouts, touchRolloutsEnded } from "./RegistryMetrics.js"
import { DRIVER, eventLine, eventRows, renderRollout, type RolloutEventRow, type RolloutRecord, startedText } from "./RolloutView.js"
import { decodeState, encodeState, insertTarget, isLive, layersJson, type Live, liveOf, liveRow, loadLive, type Row } from "./RolloutStore.js"
import { forUpdate, isPostgres } from "./SqlDialect.js"
import { type StateInfo, Storage } from "./Storage.js"
import { chunks, toDocument } from "./StorageRows.js"

export type RolloutError =
  | RolloutRefused | RolloutInProgress | StaleExpect | ConfigurationNotFound | VersionNotFound | LayerNotFound | DuplicateComponent | StorageError

export class Rollouts extends Context.Tag("registry/Rollouts")<
  Rollouts,
  {
    /** `rollout …`: start, -status, -pause, -resume, -abort; the command's output. */
    readonly run: (cmd: RolloutCommand, who: Principal) => Effect.Effect<string, RolloutError>
    /** The document `host` is served (undefined: a host without a watch session on this configuration). */
    readonly document: (name: string, host: string | undefined) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError>
    /** What every host is served now, in one read: the watch sessions of a configuration share it (WatchFanout.ts). */
    readonly serving: (name: string) => Effect.Effect<Serving, StorageError>
    /** A live rollout of the configuration (its watch sessions then ask `serving` at every event). */
    readonly live: (name: string) => boolean
    /** One line for `status -name`, when the configuration has a live rollout. */
    readonly summary: (name: string) => string | undefined
    /** A report arrived: the driver looks at the fleet now. */
    readonly wake: Effect.Effect<void>
    /** The rollouts whose targets are among these states, by state id, with their events (`history`). */
    readonly ofStates: (ids: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, RolloutOfState>, StorageError>
  }
>() {}

/** The document each host is served (none: the configuration does not exist), as read at one moment. */
export type Serving = (host: string | undefined) => Option.Option<ConfigurationDocument>

/** A rollout as `history` shows it beside its target state. */
export interface RolloutOfState {
  readonly phase: RolloutPhase
  readonly reason?: string
  readonly from: string
  readonly events: ReadonlyArray<RolloutEventRow>
}

export interface RolloutOptions {
  /** The driver looks at every live rollout this often (soak times end between reports). */
  readonly tickMs: number
  /**
   * After a (re)start, every host counts as online this long (default 35 ticks, at most 35 s: agents
   * reconnect within a random 0-30 s). Offline hosts do not block a wave, and right after a restart
   * every host is offline: without this, a resumed rollout would admit every wave at once.
   */
  readonly resumeGraceMs?: number
}

/** What the registry knows of the configuration's agents, as the plan sees it. */
export const hostViews = (rows: ReadonlyArray<HostRow>): Array<HostView> =>
  rows.filter((r) => r.kind === "agent").map((r) => {
    const outcome = r.outcome === "deployed" || r.outcome === "failed" || r.outcome === "rolled-back" || r.outcome === "refused" ? r.outcome : undefined
    return new HostView({
      host: r.host,
      online: r.connected,
      ...(r.hash !== "" ? { running: r.hash } : {}),
      ...(r.target !== "" ? { attempted: r.target } : {}),
      ...(outcome !== undefined ? { outcome } : {}),
      ...(outcome === "deployed" && r.hash !== "" ? { healthySince: Date.parse(r.since) } : {})
    })
  })

export const make = (options: RolloutOptions) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const storage = yield* Storage
    const hosts = yield* HostStatus
    const feed = yield* ChangeFeed
    const dbError = (cause: unknown) => new StorageError({ reason: "database failure", cause })
    const lock = yield* Effect.makeSemaphore(1)
    const wakeQ = yield* Queue.sliding<void>(1)

    // Resumed where they were: every step was stored. This map is a copy for serving and `summary`;
    // the stored row is the truth. Replicas on PostgreSQL reload a configuration's rollout on its feed
    // events (a step made on another replica), everything on Resync, and at each tick of the driver.
    const shared = isPostgres(sql)
    const live = yield* loadLive(sql).pipe(Effect.mapError(dbError))
    const phases = () => setLiveRollouts([...live.values()].map((a) => a.state.phase))
    phases()
    touchRolloutsEnded()
    const keep = (name: string, a: Live | undefined) => {
      if (a !== undefined) live.set(name, a)
      else live.delete(name)
      phases()
    }
    const reload = (name: string) => Effect.map(liveRow(sql, name), (a) => keep(name, a))
    const reloadAll = Effect.map(loadLive(sql), (all) => {
      for (const name of live.keys()) if (!all.has(name)) live.delete(name)
      for (const [name, a] of all) live.set(name, a)
      phases()
    })
    if (shared) {
      const changes = yield* feed.subscribe
      yield* Effect.forkScoped(Effect.forever(Effect.flatMap(changes.take, (e) =>
        (e._tag === "Resync" ? reloadAll : e._tag === "Signed" ? Effect.void : reload(e.name)).pipe(
          Effect.catchAllCause((cause) => Effect.logWarning("rollouts: reloading from the database failed", cause))
        ))))
    }

    const events = (id: number, at: number, rows: ReadonlyArray<{ readonly text: string; readonly actor: string }>) =>
      rows.length === 0 ? Effect.void
        : sql`INSERT INTO rollout_events ${sql.insert(rows.map((r) => ({ rollout_id: id, time: new Date(at).toISOString(), text: r.text, actor: r.actor })))}`

    /**
     * One step of the rollout of `name` made by `actor`, computed from the stored row (locked on
     * PostgreSQL: the leader's tick and an operator's -pause on another replica are serial), stored with
     * its events in one transaction, then told to the watchers. The phase before and after; undefined:
     * no live rollout.
     */
    const apply = (name: string, actor: string, event: (now: number) => RolloutEvent) =>
      Effect.gen(function* () {
        const now = Date.now()
        const done = yield* sql.withTransaction(
          Effect.gen(function* () {
            const a = yield* liveRow(sql, name, true)
            if (a === undefined) return undefined
            const { state, changes } = step(a.state, event(now))
            const rows = eventRows(changes, actor, a.state.failed.length)
            if (changes.length === 0) return { a, state, rows }
            yield* sql`UPDATE rollouts SET state = ${encodeState(state)}, active = ${isLive(state) ? 1 : 0}, phase = ${state.phase} WHERE id = ${a.id}`
            yield* events(a.id, now, rows)
            // The pending target becomes current (its time stays the rollout's start: signatures made since hold).
            if (state.phase === "completed") yield* sql`UPDATE configurations SET state_id = ${a.target.id} WHERE name = ${name}`
            return { a, state, rows }
          })
        ).pipe(Effect.mapError(dbError))
        if (done === undefined) {
          keep(name, undefined)
          return undefined
        }
        const { a, state, rows } = done
        keep(name, isLive(state) ? { ...a, state } : undefined)
        if (rows.length === 0) return { before: a.state.phase, after: state }
        if (state.phase === "completed" || state.phase === "reverted" || state.phase === "aborted") rolloutEnded(state.phase)
        for (const r of rows) yield* Effect.logInfo(`rollout of ${JSON.stringify(name)}: ${eventLine({ ...r, time: "" })}`)
        yield* feed.publish(state.phase === "completed" ? { _tag: "State", name, hash: a.target.hash, time: a.target.time } : { _tag: "Served", name })
        return { before: a.state.phase, after: state }
      })

    // After a start, and on PostgreSQL whenever this replica becomes the leader, every host counts as
    // online for a while (RolloutOptions.resumeGraceMs): agents of a dead leader are reconnecting.
    const graceMs = options.resumeGraceMs ?? Math.min(35_000, 35 * options.tickMs)
    let graceUntil = Date.now() + graceMs
    const tickOne = (name: string) =>
      Effect.flatMap(hosts.rows(name), (rows) => {
        const views = Date.now() < graceUntil ? hostViews(rows).map((v) => new HostView({ ...v, online: true })) : hostViews(rows)
        return apply(name, DRIVER, (now) => new Tick({ now, hosts: views }))
      })

    // The driver: after a report (wake) or every tickMs, each live rollout takes one step.
    // The timer on the host's clock (soak times are wall-clock times in reports), cleared with the scope.
    yield* Effect.acquireRelease(
      Effect.sync(() => setInterval(() => Effect.runSync(Queue.offer(wakeQ, undefined)), options.tickMs)),
      (t) => Effect.sync(() => clearInterval(t))
    )
    // Replicas on one database: only the leader drives (Leadership.ts).
    yield* Effect.forkScoped(asLeader("rollout driver",
      Effect.zipRight(Effect.sync(() => {
        graceUntil = Math.max(graceUntil, Date.now() + graceMs)
      }), Effect.forever(
        Effect.gen(function* () {
          yield* Queue.take(wakeQ)
          // Rollouts started, or stepped, by other replicas (and all of them, for a new leader).
          if (shared) yield* reloadAll.pipe(Effect.catchAllCause((cause) => Effect.logWarning("rollouts: reloading from the database failed", cause)))
          for (const name of [...live.keys()]) {
            yield* lock.withPermits(1)(tickOne(name)).pipe(
              Effect.catchAllCause((cause) => Effect.logError(`rollout of ${JSON.stringify(name)}: step failed`, cause))
            )
          }
        })
      )))
    )

    /** The target's layers, from the current state and the command. */
    const targetLayers = (cur: StateInfo, t: RolloutTarget) =>
      Effect.gen(function* () {
        const version = (component: string, v: string) =>
          storage.versions(component).pipe(
            Effect.catchTag("ComponentNotFound", () => Effect.succeed([])),
            Effect.flatMap((vs) => {
              const hit = vs.find((x) => x.version === v)
              return hit !== undefined ? Effect.succeed(hit) : Effect.fail(new VersionNotFound({ component, version: v }))
            })
          )
        switch (t._tag) {
          case "Change": {
            const i = cur.layers.findIndex((l) => l.component === t.component)
            if (i < 0) return yield* new LayerNotFound({ configuration: cur.configuration, component: t.component })
            const v = yield* version(t.component, t.version)
            return cur.layers.map((l, j) => (j === i ? v : l))
          }
          case "Layers": {
            const seen = new Set<string>()
            for (const l of t.layers) {
              if (seen.has(l.component)) return yield* new DuplicateComponent({ component: l.component })
              seen.add(l.component)
            }
            return yield* Effect.forEach(t.layers, (l) => version(l.component, l.version))
          }
          case "To": {
            const past = (yield* storage.history(cur.configuration)).find((s) => s.hash === t.hash)
            if (past === undefined) return yield* new RolloutRefused({ message: `configuration "${cur.configuration}" never had hash ${t.hash}` })
            for (const l of past.layers) {
              const v = yield* version(l.component, l.version).pipe(Effect.orElseSucceed(() => undefined))
              if (v?.hash !== l.hash) {
                return yield* new RolloutRefused({ message: `cannot roll out ${t.hash}: version "${l.version}" of component "${l.component}" was removed or changed` })
              }
            }
            return past.layers
          }
        }
      })

    const start = (cmd: RolloutCommand, who: Principal) =>
      Effect.gen(function* () {
        const name = cmd.name
        // Hosts first: reading them waits for HostStatus's writer, which must not wait for our transaction.
        const fleet = hostViews(yield* hosts.rows(name)).map((h) => h.host)
        const started = yield* sql.withTransaction(
          Effect.gen(function* () {
            // Replicas: the configuration's row held until commit, as changes do (StorageChanges.ts), so a
            // `rollout` started at once on another replica waits, then sees this one and is told so, as on
            // one registry (without it, the loser hit the unique index: "database failure").
            yield* sql`SELECT id FROM configurations WHERE name = ${name} ${forUpdate(sql)}`
            const [running] = yield* sql<{ target_hash: string }>`SELECT target_hash FROM rollouts WHERE configuration = ${name} AND active = 1`
            if (running !== undefined) return yield* new RolloutInProgress({ name, to: running.target_hash })
            const cur = yield* storage.current(name)
            if (cmd.expect !== undefined && cmd.expect !== cur.hash) return yield* new StaleExpect({ name, expected: cmd.expect, actual: cur.hash })
            const layers = yield* targetLayers(cur, cmd.target!)
            const hash = configHash(layers.map((l) => l.hash)) as Sha256
            if (hash === cur.hash) return yield* new RolloutRefused({ message: `configuration "${name}" is already at ${hash}; nothing to roll out` })
            const now = Date.now()
            const waves = parseWaves(cmd.waves)
            if (waves._tag === "Left") return yield* new RolloutRefused({ message: waves.left })
            const spec = new RolloutSpec({
              configuration: name, from: cur.hash, to: hash, waves: waves.right, soakMs: cmd.soakMs, maxFailures: cmd.maxFailures,
              onFailure: cmd.onFailure, canary: cmd.canary
            })
            const state = plan(spec, fleet, now)
            // The target is stored now, pending: signable at once (addsig), served with its signatures.
            const targetId = yield* insertTarget(sql, name, { configuration: name, hash, time: new Date(now), who, layers })
            const [row] = yield* sql<Row>`INSERT INTO rollouts ${sql.insert({
              configuration: name, active: 1, state: encodeState(state), target_hash: hash, target_layers: layersJson(layers),
              started: new Date(now).toISOString(), who_user: who.user, who_fingerprint: who.fingerprint, who_comment: who.comment,
              target_state_id: targetId, phase: state.phase
            })} RETURNING *`
            yield* events(row!.id, now, [
              { text: startedText(spec, cmd.soak), actor: who.label },
              ...eventRows([{ _tag: "WaveAdmitted", wave: 1, hosts: state.waves[0]?.hosts ?? [], at: now }], DRIVER, 0)
            ])
            return liveOf(row!)
          })
        ).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(dbError(e))))
        keep(name, started)
        yield* Effect.logInfo(`rollout of ${JSON.stringify(name)} to ${started.target.hash} started by ${who.label}`)
        yield* feed.publish({ _tag: "Served", name })
        yield* Queue.offer(wakeQ, undefined)
        const w = started.state.waves
        return `rollout of "${name}" to ${started.target.hash} started: ${w.length} wave(s); wave 1: ${w[0]!.hosts.join(", ") || "(no host: hosts without a session get it in the last wave)"}\n` +
          `the target is a pending state until the rollout completes; sign it with: deployctl sign -name ${name} -hash ${started.target.hash}\n`
      })

    /** The newest rollout of the configuration, live or over, with its events. */
    const record = (name: string) =>
      Effect.gen(function* () {
        const [row] = yield* sql<Row>`SELECT * FROM rollouts WHERE configuration = ${name} ORDER BY id DESC LIMIT 1`
        if (row === undefined) return undefined
        const evs = yield* sql<RolloutEventRow>`SELECT time, text, actor FROM rollout_events WHERE rollout_id = ${row.id} ORDER BY rowid`
        return { ...liveOf(row), started: new Date(row.started), events: evs } satisfies RolloutRecord
      }).pipe(Effect.mapError(dbError))

    const control = (cmd: RolloutCommand, who: Principal) =>
      Effect.gen(function* () {
        const name = cmd.name
        // The stored row, whichever replica started or steps it.
        const r = yield* apply(name, who.label, (now) =>
          cmd.action === "pause" ? new Pause({ now }) : cmd.action === "resume" ? new Resume({ now }) : new Abort({ now, by: who.label })
        )
        if (r === undefined) return yield* new RolloutRefused({ message: `configuration "${name}" has no rollout in progress` })
        if (r.after.phase === r.before) {
          return yield* new RolloutRefused({ message: `the rollout of "${name}" is ${r.before}; -${cmd.action} changes nothing` })
        }
        return `rollout of "${name}": ${r.after.phase}\n`
      })

    const run = (cmd: RolloutCommand, who: Principal): Effect.Effect<string, RolloutError> => {
      if (cmd.action === "status") {
        return Effect.gen(function* () {
          yield* storage.current(cmd.name)
          const r = yield* record(cmd.name)
          if (r === undefined) return yield* new RolloutRefused({ message: `configuration "${cmd.name}" has had no rollout` })
          const views = hostViews(yield* hosts.rows(cmd.name))
          return renderRollout(r, views, Date.now(), cmd.json)
        })
      }
      return lock.withPermits(1)(cmd.action === "start" ? start(cmd, who) : control(cmd, who))
    }

    const getsTarget = (a: Live | undefined, host: string | undefined): a is Live => a !== undefined && served(a.state, host) === a.target.hash
    // PostgreSQL: the stored row, read with the current state: a watcher may see another replica's event
    // before this replica's copy is reloaded. SQLite: the copy, always current.
    const liveNow = (name: string) =>
      shared ? Effect.tap(liveRow(sql, name).pipe(Effect.mapError(dbError)), (a) => keep(name, a)) : Effect.succeed(live.get(name))
    const document = (name: string, host: string | undefined) =>
      Effect.flatMap(liveNow(name), (a) => (getsTarget(a, host) ? Effect.succeed(Option.some(toDocument(a.target))) : storage.document(name)))
    const serving = (name: string) =>
      Effect.flatMap(liveNow(name), (a) =>
        Effect.map(storage.document(name), (current): Serving => {
          const target = a === undefined ? current : Option.some(toDocument(a.target))
          return (host) => (getsTarget(a, host) ? target : current)
        })
      )

    const summary = (name: string) => {
      const a = live.get(name)
      if (a === undefined) return undefined
      const admitted = a.state.waves.filter((w) => w.admittedAt !== undefined).length
      return `rollout to ${a.target.hash}: ${a.state.phase}, wave ${admitted} of ${a.state.waves.length} (rollout -name ${name} -status)`
    }

    const ofStates = (ids: ReadonlyArray<number>) =>
      Effect.gen(function* () {
        const out = new Map<number, RolloutOfState>()
        const rows = (yield* Effect.forEach(chunks(ids), (c) =>
          sql<Row>`SELECT * FROM rollouts WHERE ${sql.in("target_state_id", c)} AND target_state_id <> 0`)).flat()
        if (rows.length === 0) return out
        const evs = (yield* Effect.forEach(chunks(rows.map((r) => r.id)), (c) =>
          sql<RolloutEventRow & { rollout_id: number }>`SELECT rollout_id, time, text, actor FROM rollout_events WHERE ${sql.in("rollout_id", c)} ORDER BY rowid`)).flat()
        for (const r of rows) {
          const s = decodeState(r.state)
          out.set(r.target_state_id, {
            phase: s.phase, from: s.spec.from, ...(s.reason !== undefined ? { reason: s.reason } : {}),
            events: evs.filter((e) => e.rollout_id === r.id).map((e) => ({ time: e.time, text: e.text, actor: e.actor }))
          })
        }
        return out as ReadonlyMap<number, RolloutOfState>
      }).pipe(Effect.mapError(dbError))

    return Rollouts.of({ run, document, serving, live: (name) => live.has(name), summary, wake: Queue.offer(wakeQ, undefined).pipe(Effect.asVoid), ofStates })
  })

/** Requires SqlClient (migrated), Storage, HostStatus and ChangeFeed; the driver runs while the layer lives. */
export const RolloutsLive = (options: RolloutOptions = { tickMs: 1000 }) => Layer.scoped(Rollouts, make(options))

/** No rollouts: every host is served the current state (tests of servers that do not roll out). */
export const RolloutsNone = Layer.effect(
  Rollouts,
  Effect.map(Storage, (storage) =>
    Rollouts.of({
      run: () => Effect.fail(new RolloutRefused({ message: "rollouts are not available here" })),
      document: (name) => storage.document(name),
      serving: (name) => Effect.map(storage.document(name), (doc): Serving => () => doc),
      live: () => false,
      summary: () => undefined,
      wake: Effect.void,
      ofStates: () => Effect.succeed(new Map())
    })
  )
)
