// Staged rollouts (docs/rollouts.md "On the registry"): the `rollout` command, its storage (table
// rollouts, migrations 4 and 5), which state each host is served, and the driver: one fiber, woken by
// reports and a timer, that moves every live rollout with RolloutPlan.step and stores each step, with
// its events, in one transaction. The target is a stored state from the start (pending: signable, never
// current); a rollout that completes makes it the configuration's current state.
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Option, Queue, Schema } from "effect"
import { configHash } from "../domain/ConfigHash.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import {
  ConfigurationNotFound, DuplicateComponent, LayerNotFound, RolloutInProgress, RolloutRefused, StaleExpect, StorageError, VersionNotFound
} from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import { Principal } from "../domain/Principal.js"
import { HostView, type RolloutEvent, type RolloutPhase, RolloutSpec, RolloutState, Tick, Pause, Resume, Abort } from "../domain/Rollout.js"
import type { RolloutCommand, RolloutTarget } from "../domain/RolloutCommand.js"
import { ChangeFeed } from "./ChangeFeed.js"
import { asLeader } from "./Leadership.js"
import { HostStatus, type HostRow } from "./HostStatus.js"
import { parseWaves, plan, served, step } from "./RolloutPlan.js"
import { rolloutEnded, setLiveRollouts, touchRolloutsEnded } from "./RegistryMetrics.js"
import { DRIVER, eventLine, eventRows, renderRollout, type RolloutEventRow, type RolloutRecord, startedText } from "./RolloutView.js"
import { insertState, type LayerInfo, type StateInfo, Storage } from "./Storage.js"
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
    /** A live rollout of the configuration (the watch stream then asks `document` at every event). */
    readonly live: (name: string) => boolean
    /** One line for `status -name`, when the configuration has a live rollout. */
    readonly summary: (name: string) => string | undefined
    /** A report arrived: the driver looks at the fleet now. */
    readonly wake: Effect.Effect<void>
    /** The rollouts whose targets are among these states, by state id, with their events (`history`). */
    readonly ofStates: (ids: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, RolloutOfState>, StorageError>
  }
>() {}

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

/** A rollout that serves something: running, paused or halted (reverted, aborted, completed are over). */
const isLive = (s: RolloutState) => s.phase === "running" || s.phase === "paused" || s.phase === "halted"

interface Live {
  readonly id: number
  readonly state: RolloutState
  /** The target: a stored state, not current until the rollout completes. */
  readonly target: StateInfo
}

interface Row {
  readonly id: number
  readonly configuration: string
  readonly active: number
  readonly state: string
  readonly target_hash: string
  readonly target_layers: string
  readonly target_state_id: number
  readonly started: string
  readonly who_user: string
  readonly who_fingerprint: string
  readonly who_comment: string
}

const encodeState = (s: RolloutState) => JSON.stringify(Schema.encodeSync(RolloutState)(s))
const decodeState = (s: string) => Schema.decodeUnknownSync(RolloutState)(JSON.parse(s))

const layersJson = (ls: ReadonlyArray<LayerInfo>) =>
  JSON.stringify(ls.map((l) => ({ component: l.component, version: l.version, hash: l.hash, ctime: l.ctime.toISOString() })))
const layersOf = (s: string): ReadonlyArray<LayerInfo> =>
  (JSON.parse(s) as Array<{ component: string; version: string; hash: string; ctime: string }>).map((l) => ({
    component: l.component, version: l.version, hash: l.hash as Sha256, ctime: new Date(l.ctime)
  }))

const whoOf = (r: Row) => new Principal({ user: r.who_user, fingerprint: r.who_fingerprint, comment: r.who_comment }, true)

const liveOf = (r: Row): Live => ({
  id: r.id,
  state: decodeState(r.state),
  target: { id: r.target_state_id, configuration: r.configuration, hash: r.target_hash as Sha256, time: new Date(r.started), who: whoOf(r), layers: layersOf(r.target_layers) }
})

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

/** Inserts the target as a stored state of the configuration (not current); its id. */
const insertTarget = (sql: SqlClient.SqlClient, name: string, target: Omit<StateInfo, "id">) =>
  Effect.gen(function* () {
    const [conf] = yield* sql<{ id: number }>`SELECT id FROM configurations WHERE name = ${name}`
    if (conf === undefined) return 0
    return yield* insertState(sql, conf.id, target)
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

    // Resumed where they were: every step was stored. A rollout started before migration 5 gets its
    // target stored now, so that it can be signed and is served with its signatures.
    const live = new Map<string, Live>()
    for (const r of yield* sql<Row>`SELECT * FROM rollouts WHERE active = 1`.pipe(Effect.mapError(dbError))) {
      let row = r
      if (r.target_state_id === 0) {
        const l = liveOf(r)
        const id = yield* sql.withTransaction(Effect.tap(insertTarget(sql, r.configuration, l.target), (id) =>
          sql`UPDATE rollouts SET target_state_id = ${id}, phase = ${l.state.phase} WHERE id = ${r.id}`)).pipe(Effect.mapError(dbError))
        row = { ...r, target_state_id: id }
      }
      live.set(r.configuration, liveOf(row))
    }
    const phases = () => setLiveRollouts([...live.values()].map((a) => a.state.phase))
    phases()
    touchRolloutsEnded()

    const events = (id: number, at: number, rows: ReadonlyArray<{ readonly text: string; readonly actor: string }>) =>
      rows.length === 0 ? Effect.void
        : sql`INSERT INTO rollout_events ${sql.insert(rows.map((r) => ({ rollout_id: id, time: new Date(at).toISOString(), text: r.text, actor: r.actor })))}`

    /** One step of the rollout of `name` made by `actor`, stored with its events in one transaction, then told to the watchers. */
    const apply = (name: string, actor: string, event: (now: number) => RolloutEvent) =>
      Effect.gen(function* () {
        const a = live.get(name)
        if (a === undefined) return undefined
        const now = Date.now()
        const { state, changes } = step(a.state, event(now))
        if (changes.length === 0) return state
        const completed = state.phase === "completed"
        const rows = eventRows(changes, actor, a.state.failed.length)
        yield* sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`UPDATE rollouts SET state = ${encodeState(state)}, active = ${isLive(state) ? 1 : 0}, phase = ${state.phase} WHERE id = ${a.id}`
            yield* events(a.id, now, rows)
            // The pending target becomes current (its time stays the rollout's start: signatures made since hold).
            if (completed) yield* sql`UPDATE configurations SET state_id = ${a.target.id} WHERE name = ${name}`
          })
        ).pipe(Effect.mapError(dbError))
        if (isLive(state)) live.set(name, { ...a, state })
        else live.delete(name)
        phases()
        if (state.phase === "completed" || state.phase === "reverted" || state.phase === "aborted") rolloutEnded(state.phase)
        for (const r of rows) yield* Effect.logInfo(`rollout of ${JSON.stringify(name)}: ${eventLine({ ...r, time: "" })}`)
        yield* feed.publish(completed ? { _tag: "State", name, hash: a.target.hash, time: a.target.time } : { _tag: "Served", name })
        return state
      })

    const graceUntil = Date.now() + (options.resumeGraceMs ?? Math.min(35_000, 35 * options.tickMs))
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
      Effect.forever(
        Effect.gen(function* () {
          yield* Queue.take(wakeQ)
          for (const name of [...live.keys()]) {
            yield* lock.withPermits(1)(tickOne(name)).pipe(
              Effect.catchAllCause((cause) => Effect.logError(`rollout of ${JSON.stringify(name)}: step failed`, cause))
            )
          }
        })
      ))
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
        live.set(name, started)
        phases()
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
        const a = live.get(name)
        if (a === undefined) return yield* new RolloutRefused({ message: `configuration "${name}" has no rollout in progress` })
        const before = a.state.phase
        const after = yield* apply(name, who.label, (now) =>
          cmd.action === "pause" ? new Pause({ now }) : cmd.action === "resume" ? new Resume({ now }) : new Abort({ now, by: who.label })
        )
        if (after === undefined || after.phase === before) {
          return yield* new RolloutRefused({ message: `the rollout of "${name}" is ${before}; -${cmd.action} changes nothing` })
        }
        return `rollout of "${name}": ${after.phase}\n`
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

    const document = (name: string, host: string | undefined) => {
      const a = live.get(name)
      return a !== undefined && served(a.state, host) === a.target.hash
        ? Effect.succeed(Option.some(toDocument(a.target)))
        : storage.document(name)
    }

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

    return Rollouts.of({ run, document, live: (name) => live.has(name), summary, wake: Queue.offer(wakeQ, undefined).pipe(Effect.asVoid), ofStates })
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
      live: () => false,
      summary: () => undefined,
      wake: Effect.void,
      ofStates: () => Effect.succeed(new Map())
    })
  )
)
