// The rollout model (docs/rollouts.md "On the registry") as pure functions over src/domain/Rollout.ts:
// wave sizes from -waves, a deterministic wave order, admission after -soak, failures against
// -max-failures, halt/revert, pause/resume/abort, which hash each host is served, and the status.
// No I/O and no clock: the caller passes `now` and what it knows of the hosts, and stores the state.
import { createHash } from "node:crypto"
import {
  hostList,
  type HostRolloutState,
  type HostView,
  isFinished,
  type RolloutChange,
  type RolloutEvent,
  type RolloutPhase,
  type RolloutSpec,
  RolloutState,
  Wave,
  type WaveSize
} from "../domain/Rollout.js"

export { parseWaves } from "../domain/Rollout.js"

/** A host's stable place among the others: sha256(configuration NUL host), the same after a restart. */
const orderKey = (configuration: string, host: string) => createHash("sha256").update(`${configuration}\0${host}`).digest("hex")

/** Rollout order: the -canary hosts as given, then every other host by `orderKey`. */
export const waveOrder = (configuration: string, hosts: ReadonlyArray<string>, canary: ReadonlyArray<string>): Array<string> => {
  const first = [...new Set(canary)]
  const rest = [...new Set(hosts)].filter((h) => !first.includes(h))
  const keyed = rest.map((h) => [orderKey(configuration, h), h] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  return [...first, ...keyed.map(([, h]) => h)]
}

/**
 * How many hosts have been admitted after each wave, for `n` hosts: a count is capped at n, a
 * percentage rounds up; never fewer than the canaries in the first wave, never decreasing; waves
 * adding nobody are dropped, and a last wave takes whoever is left. At least one wave.
 */
export const cumulativeCounts = (sizes: ReadonlyArray<WaveSize>, n: number, canaries = 0): Array<number> => {
  const out: Array<number> = []
  for (const s of sizes) {
    const raw = s._tag === "Hosts" ? Math.min(s.count, n) : Math.ceil((s.percent * n) / 100)
    const c = Math.max(raw, out.length === 0 ? Math.min(canaries, n) : 0, out.at(-1) ?? 0)
    if (c > (out.at(-1) ?? 0)) out.push(c)
  }
  if ((out.at(-1) ?? 0) < n || out.length === 0) out.push(n)
  return out
}

/** The rollout as it starts at `now` over the hosts known then: waves in order, the first admitted. */
export const plan = (spec: RolloutSpec, hosts: ReadonlyArray<string>, now: number): RolloutState => {
  const order = waveOrder(spec.configuration, hosts, spec.canary)
  const counts = cumulativeCounts(spec.waves, order.length, new Set(spec.canary).size)
  const waves = counts.map(
    (c, i) => new Wave({ hosts: order.slice(i === 0 ? 0 : counts[i - 1], c), ...(i === 0 ? { admittedAt: now } : {}) })
  )
  return new RolloutState({ spec, startedAt: now, phase: "running", waves, failed: [] })
}

export const admittedCount = (s: RolloutState): number => s.waves.filter((w) => w.admittedAt !== undefined).length

const waveOf = (s: RolloutState, host: string): number => s.waves.findIndex((w) => w.hosts.includes(host))

const isAdmitted = (s: RolloutState, host: string): boolean => {
  const i = waveOf(s, host)
  return i < 0 ? admittedCount(s) === s.waves.length : s.waves[i]!.admittedAt !== undefined
}

/** The hash the registry serves `host` (undefined: a host that only polls, known by no session). */
export const served = (s: RolloutState, host: string | undefined): string => {
  switch (s.phase) {
    case "reverted":
    case "aborted":
      return s.spec.from
    case "completed":
      return s.spec.to
    default:
      // Hosts without a session, and hosts that appear during the rollout, are in the last wave.
      return (host === undefined ? admittedCount(s) === s.waves.length : isAdmitted(s, host)) ? s.spec.to : s.spec.from
  }
}

const healthy = (spec: RolloutSpec, h: HostView | undefined, now: number): boolean =>
  h !== undefined && h.running === spec.to && h.outcome === "deployed" && h.healthySince !== undefined && now - h.healthySince >= spec.soakMs

const failedOutcome = (spec: RolloutSpec, h: HostView | undefined): string | undefined =>
  h !== undefined && h.attempted === spec.to && (h.outcome === "failed" || h.outcome === "rolled-back") ? h.outcome : undefined

/** A wave is passed when each of its hosts is healthy for the soak time, offline, or already counted as failed. */
const passed = (s: RolloutState, wave: Wave, views: ReadonlyMap<string, HostView>, now: number) =>
  wave.hosts.every((h) => {
    const v = views.get(h)
    return v === undefined || !v.online || s.failed.includes(h) || healthy(s.spec, v, now)
  })

export interface Step {
  readonly state: RolloutState
  readonly changes: ReadonlyArray<RolloutChange>
}

const withPhase = (s: RolloutState, phase: RolloutPhase, at: number, reason?: string): Step => ({
  state: new RolloutState({ ...s, phase, ...(reason !== undefined ? { reason } : {}) }),
  changes: [{ _tag: "PhaseChanged", phase, at, ...(reason !== undefined ? { reason } : {}) }]
})

/** One transition. Finished rollouts do not move (except an abort of a halted one: everyone goes back). */
export const step = (s: RolloutState, e: RolloutEvent): Step => {
  switch (e._tag) {
    case "Pause":
      return s.phase === "running" ? withPhase(s, "paused", e.now) : { state: s, changes: [] }
    case "Resume":
      return s.phase === "paused" ? withPhase(s, "running", e.now) : { state: s, changes: [] }
    case "Abort":
      return isFinished(s.phase) && s.phase !== "halted" ? { state: s, changes: [] } : withPhase(s, "aborted", e.now, `aborted by ${e.by}`)
    case "Tick":
      return tick(s, e.now, e.hosts)
  }
}

const tick = (s0: RolloutState, now: number, hosts: ReadonlyArray<HostView>): Step => {
  if (isFinished(s0.phase)) return { state: s0, changes: [] }
  const changes: Array<RolloutChange> = []
  const views = new Map(hosts.map((h) => [h.host, h]))
  // Hosts seen for the first time join the last wave.
  const known = new Set(s0.waves.flatMap((w) => w.hosts))
  const late = hosts.map((h) => h.host).filter((h) => !known.has(h))
  const waves = late.length === 0 ? s0.waves : [...s0.waves.slice(0, -1), new Wave({ ...s0.waves.at(-1)!, hosts: [...s0.waves.at(-1)!.hosts, ...late] })]
  let s = new RolloutState({ ...s0, waves })
  // Failures of admitted hosts, each counted once.
  const failed = [...s.failed]
  for (const h of hosts) {
    const outcome = failedOutcome(s.spec, h)
    if (outcome !== undefined && !failed.includes(h.host) && isAdmitted(s, h.host)) {
      failed.push(h.host)
      changes.push({ _tag: "HostFailed", host: h.host, outcome, at: now })
    }
  }
  s = new RolloutState({ ...s, failed })
  if (failed.length > s.spec.maxFailures) {
    const reason = `${failed.length} host(s) failed (max ${s.spec.maxFailures}): ${hostList(failed)}`
    const r = withPhase(s, s.spec.onFailure === "revert" ? "reverted" : "halted", now, reason)
    return { state: r.state, changes: [...changes, ...r.changes] }
  }
  if (s.phase !== "running") return { state: s, changes }
  const k = admittedCount(s)
  if (!passed(s, s.waves[k - 1]!, views, now)) return { state: s, changes }
  if (k === s.waves.length) {
    const r = withPhase(s, "completed", now)
    return { state: r.state, changes: [...changes, ...r.changes] }
  }
  const next = s.waves[k]!
  s = new RolloutState({ ...s, waves: s.waves.map((w, i) => (i === k ? new Wave({ ...w, admittedAt: now }) : w)) })
  changes.push({ _tag: "WaveAdmitted", wave: k + 1, hosts: next.hosts, at: now })
  return { state: s, changes }
}

export interface HostStatus {
  readonly host: string
  readonly state: HostRolloutState
  /** Soak time left, for a soaking host. */
  readonly soakLeftMs?: number
}

export interface RolloutStatus {
  readonly phase: RolloutPhase
  readonly reason?: string
  readonly waves: ReadonlyArray<{ readonly wave: number; readonly admittedAt?: number; readonly hosts: ReadonlyArray<HostStatus> }>
  /** Hosts the next admission (or completion) waits for; empty when nothing is awaited. */
  readonly waitingFor: ReadonlyArray<HostStatus>
  /** Offline hosts: they do not block admission. */
  readonly offline: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
}

const hostState = (s: RolloutState, host: string, v: HostView | undefined, now: number): HostStatus => {
  if (s.failed.includes(host)) return { host, state: "failed" }
  if (!isAdmitted(s, host) || s.phase === "reverted" || s.phase === "aborted") {
    if (v === undefined || !v.online) return { host, state: "offline" }
    return { host, state: isAdmitted(s, host) ? "reverted" : "waiting" }
  }
  if (v === undefined || !v.online) return { host, state: "offline" }
  if (healthy(s.spec, v, now)) return { host, state: "healthy" }
  if (v.attempted === s.spec.to && v.outcome === "refused") return { host, state: "refused" }
  if (v.running === s.spec.to && v.outcome === "deployed" && v.healthySince !== undefined)
    return { host, state: "soaking", soakLeftMs: s.spec.soakMs - (now - v.healthySince) }
  return { host, state: "updating" }
}

/** `rollout -status`: waves, each host's state, and what the rollout waits for. */
export const status = (s: RolloutState, hosts: ReadonlyArray<HostView>, now: number): RolloutStatus => {
  const views = new Map(hosts.map((h) => [h.host, h]))
  const waves = s.waves.map((w, i) => ({
    wave: i + 1,
    ...(w.admittedAt !== undefined ? { admittedAt: w.admittedAt } : {}),
    hosts: w.hosts.map((h) => hostState(s, h, views.get(h), now))
  }))
  const current = waves[admittedCount(s) - 1]
  const waitingFor =
    isFinished(s.phase) || current === undefined ? [] : current.hosts.filter((h) => h.state === "soaking" || h.state === "updating" || h.state === "refused")
  const offline = waves.flatMap((w) => w.hosts).filter((h) => h.state === "offline").map((h) => h.host)
  return { phase: s.phase, ...(s.reason !== undefined ? { reason: s.reason } : {}), waves, waitingFor, offline, failed: s.failed }
}

