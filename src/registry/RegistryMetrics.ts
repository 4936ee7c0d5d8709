// The registry's metrics (docs/metrics.md), recorded with Effect's Metric API where the events happen.
// Recording is a map update in the global metric registry, cheap enough to stay on when -metrics is off;
// only the exporter (src/metrics/MetricsEndpoint.ts) is loaded on demand. Every label value comes from a
// closed set here: never a host name, hash, key or path.
import { Metric, MetricBoundaries, MetricKey, type MetricKeyType, MetricLabel } from "effect"
import { catalogue } from "../domain/Commands.js"
import { lazyRecord } from "../launch/LazyRecord.js"
import type { RejectKind } from "./Auth.js"

export type ConnRole = "operator" | "agent"
/** How a connection's login phase ended. */
export type ConnOutcome = "login" | "refused" | "timeout" | "closed" | "limit"

const P = "deploy_registry_"
const counterKey = (name: string, description: string) => MetricKey.counter(P + name, { description, incremental: true })
const counter = (name: string, description: string) => Metric.fromMetricKey(counterKey(name, description))
/** An up-down counter: exported as a Prometheus gauge. */
const levelKey = (name: string, description: string) => MetricKey.counter(P + name, { description })
const level = (name: string, description: string) => Metric.fromMetricKey(levelKey(name, description))

/**
 * The metric of `key` with `labels`, made from the tagged key. Not Metric.tagged: that merges its tags into
 * a new array on every update, so Effect made and hashed a new MetricKey for each event (4% of the
 * registry's CPU per handshake); this one looks its key up once and keeps the hook.
 */
const tagged = <Type extends MetricKeyType.MetricKeyType<any, any>>(key: MetricKey.MetricKey<Type>, labels: Record<string, string>) =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(key, Object.entries(labels).map(([k, v]) => MetricLabel.make(k, v))))

/**
 * Pre-tagged instances per label combination: no key lookup per event beyond the registry's own. Each is
 * made when first used (making every command's at load cost ~10 ms of each start).
 */
const byLabels = <K extends string, M>(values: ReadonlyArray<K>, make: (v: K) => M): Record<K, M> => lazyRecord(values, make)

const ROLES = ["operator", "agent"] as const satisfies ReadonlyArray<ConnRole>
const PHASE_ROLES = ["pending", "operator", "agent"] as const
const OUTCOMES = ["login", "refused", "timeout", "closed", "limit"] as const satisfies ReadonlyArray<ConnOutcome>
const REJECT_KINDS = ["weak_algorithm", "not_listed", "bad_signature", "key_options", "certificate"] as const satisfies ReadonlyArray<RejectKind>
export const COMMAND_NAMES = [...catalogue.map((c) => c.name), "unknown"] as const
export type CommandLabel = (typeof COMMAND_NAMES)[number]

const connectionsOpen = levelKey("connections_open", "SSH connections open, by role (pending: before login)")
export const connectionsOpenBy = byLabels(PHASE_ROLES, (role) => tagged(connectionsOpen, { role }))

const connections = counterKey("connections_total", "SSH connections by role (none before a login) and how the login phase ended")
export const connectionsBy = (role: ConnRole | "none", outcome: ConnOutcome) => connectionsTable[role][outcome]
const connectionsTable = byLabels([...ROLES, "none"] as const, (role) =>
  byLabels(OUTCOMES, (outcome) => tagged(connections, { role, outcome }))
)

const authFailures = counterKey("auth_failures_total", "refused public-key login attempts by reason")
export const authFailuresBy = byLabels(REJECT_KINDS, (reason) => tagged(authFailures, { reason }))

const commands = counterKey("commands_total", "operator console commands by name and outcome (ok: exit 0)")
const commandSeconds = MetricKey.histogram(
  P + "command_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 4, count: 9 }),
  "operator console command duration in seconds"
)
export const commandBy = byLabels(COMMAND_NAMES, (name) => ({
  ok: tagged(commands, { command: name, outcome: "ok" }),
  error: tagged(commands, { command: name, outcome: "error" }),
  seconds: tagged(commandSeconds, { command: name })
}))
export const commandLabel = (name: string): CommandLabel =>
  (COMMAND_NAMES as ReadonlyArray<string>).includes(name) ? (name as CommandLabel) : "unknown"

const bytes = counterKey("bytes_total", "SSH bytes by role and direction (in: received), counted when a connection closes")
export const bytesBy = byLabels([...ROLES, "none"] as const, (role) => ({
  in: tagged(bytes, { role, direction: "in" }),
  out: tagged(bytes, { role, direction: "out" })
}))

const sftpSessions = levelKey("sftp_sessions_open", "SFTP sessions open, by role")
export const sftpSessionsBy = byLabels(ROLES, (role) => tagged(sftpSessions, { role }))

const janitorRuns = counterKey("janitor_runs_total", "janitor runs by task (retention, upload_sweep) and outcome")
export const janitorRunsBy = byLabels(["retention", "upload_sweep"] as const, (task) => ({
  ok: tagged(janitorRuns, { task, outcome: "ok" }),
  error: tagged(janitorRuns, { task, outcome: "error" })
}))
export const janitorFreedBytes = counter("janitor_freed_bytes_total", "bytes of blobs removed by retention")
export const janitorRemovedBlobs = counter("janitor_removed_blobs_total", "blobs removed by retention")

export const blobsStored = Metric.gauge(P + "blobs", { description: "blobs stored (refreshed at most once a minute)" })
export const blobBytesStored = Metric.gauge(P + "blob_bytes", { description: "bytes of blobs stored (refreshed at most once a minute)" })

/** Adds `n` (may be negative for levels) without a fiber: for ssh2's event callbacks. */
export const bump = (m: Metric.Metric<any, number, any>, n = 1): void => m.unsafeUpdate(n, [])

/** Makes every fixed series visible at 0 from the first scrape (rate() and alerts need the zero). */
export const touchAll = (): void => {
  const all: Array<Metric.Metric<any, number, any>> = [
    ...Object.values(connectionsOpenBy),
    ...Object.values(connectionsTable).flatMap((o) => Object.values(o)),
    ...Object.values(authFailuresBy),
    ...Object.values(commandBy).flatMap((c) => [c.ok, c.error]),
    ...Object.values(bytesBy).flatMap((b) => [b.in, b.out]),
    ...Object.values(sftpSessionsBy),
    ...Object.values(janitorRunsBy).flatMap((j) => [j.ok, j.error]),
    janitorFreedBytes,
    janitorRemovedBlobs
  ]
  for (const m of all) bump(m, 0)
}

const watchers = level("watchers_connected", "agent watch sessions open")
export const watchersConnected = watchers

/** Per configuration (operator-made names, few): created on first use. */
export const hostsGauge = Metric.gauge(P + "hosts", { description: "hosts by configuration and state (current, behind, deploying, failed, offline), read at scrape" })
export const HOST_STATES = ["current", "behind", "deploying", "failed", "offline"] as const

export const deployOutcomes = counter("deploy_outcomes_total", "agents' reports by configuration and outcome")
export const propagationSeconds = Metric.histogram(
  P + "propagation_seconds",
  MetricBoundaries.fromIterable([1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]),
  "seconds from a configuration's commit to a host reporting it deployed"
)

// Rollouts (docs/rollouts.md): the live ones by phase, set by Rollouts at every step; and how they ended.
export const ROLLOUT_LIVE_PHASES = ["running", "paused", "halted"] as const
const rolloutsGauge = Metric.gauge(P + "rollouts", { description: "rollouts in progress by state (running, paused, halted: waiting for an operator)" })
const rolloutsBy = byLabels(ROLLOUT_LIVE_PHASES, (s) => Metric.tagged(rolloutsGauge, "state", s))
/** Sets every live state's count (0 included) from the phases of the live rollouts. */
export const setLiveRollouts = (phases: ReadonlyArray<string>): void => {
  for (const s of ROLLOUT_LIVE_PHASES) rolloutsBy[s].unsafeUpdate(phases.filter((p) => p === s).length, [])
}
export const ROLLOUT_ENDS = ["completed", "reverted", "aborted"] as const
const rolloutsEnded = counter("rollouts_ended_total", "rollouts ended, by outcome (completed, reverted, aborted)")
const rolloutsEndedBy = byLabels(ROLLOUT_ENDS, (o) => Metric.tagged(rolloutsEnded, "outcome", o))
export const rolloutEnded = (outcome: (typeof ROLLOUT_ENDS)[number]): void => bump(rolloutsEndedBy[outcome])
/** The ended counters at 0 from the first scrape (increase() needs the zero). */
export const touchRolloutsEnded = (): void => {
  for (const m of Object.values(rolloutsEndedBy)) bump(m, 0)
}
