// Each host's deploy outcomes of the last 24 h, for `status -name N -timeline` and the web view's
// timeline picture. Fed by the reports HostStatus publishes (HostEvents.ts).
//
// In memory, not in the database: it is a recent-activity picture (host_status keeps every host's last
// outcome durably), it costs no write per report beside the one HostStatus already coalesces, and it
// needs no schema change. A restarted registry starts an empty timeline. Bounded: at most
// MAX_PER_HOST entries per host and MAX_TOTAL in all (the oldest go first), and nothing older than 24 h.
import { Context, Effect, Layer, Queue } from "effect"
import type { Outcome } from "../domain/Report.js"
import { HostEvents } from "./HostEvents.js"

/** What the timeline shows: the agent's unpack and download failures count as failed. */
export type TimelineOutcome = "deployed" | "rolled-back" | "failed" | "refused" | "deploying"

export interface TimelineEntry {
  readonly host: string
  readonly time: Date
  readonly hash: string
  readonly outcome: TimelineOutcome
}

export const WINDOW_MS = 24 * 3600 * 1000
export const MAX_PER_HOST = 200
export const MAX_TOTAL = 200_000

export const timelineOutcome = (o: Outcome): TimelineOutcome =>
  o === "unpack-refused" || o === "download-failed" ? "failed" : o

interface Stored extends TimelineEntry {
  readonly key: string
  removed: boolean
}

const keyOf = (configuration: string, host: string) => `${configuration}\u0000${host}`

/** The bounded store (pure, synchronous; the clock is passed in). */
export const makeStore = (limits: { readonly perHost: number; readonly total: number; readonly windowMs: number } = {
  perHost: MAX_PER_HOST, total: MAX_TOTAL, windowMs: WINDOW_MS
}) => {
  /** Per configuration, per host key: entries oldest first. */
  const byConf = new Map<string, Map<string, Array<Stored>>>()
  /** Every entry in arrival order (oldest first); entries dropped by the per-host cap stay as removed until passed. */
  let order: Array<Stored> = []
  let head = 0
  let live = 0

  const hostList = (configuration: string, key: string) => byConf.get(configuration)?.get(key)

  const dropOldestOf = (configuration: string, key: string) => {
    const list = hostList(configuration, key)
    const e = list?.shift()
    if (e === undefined) return
    e.removed = true
    live--
    if (list!.length === 0) {
      const hosts = byConf.get(configuration)!
      hosts.delete(key)
      if (hosts.size === 0) byConf.delete(configuration)
    }
  }

  /** Drops from the front of the arrival order while too old or too many. */
  const trim = (now: number) => {
    while (head < order.length) {
      const e = order[head]!
      if (!e.removed && live <= limits.total && now - e.time.getTime() <= limits.windowMs) break
      if (!e.removed) dropOldestOf(configurationOf(e), e.key)
      head++
    }
    // Compact once the passed prefix dominates.
    if (head > 1024 && head * 2 > order.length) {
      order = order.slice(head)
      head = 0
    }
  }
  const configurationOf = (e: Stored) => e.key.slice(0, e.key.indexOf("\u0000"))

  const record = (configuration: string, entry: TimelineEntry) => {
    const key = keyOf(configuration, entry.host)
    let hosts = byConf.get(configuration)
    if (hosts === undefined) byConf.set(configuration, (hosts = new Map()))
    let list = hosts.get(key)
    if (list === undefined) hosts.set(key, (list = []))
    const stored: Stored = { ...entry, key, removed: false }
    list.push(stored)
    order.push(stored)
    live++
    if (list.length > limits.perHost) dropOldestOf(configuration, key)
    trim(entry.time.getTime())
  }

  /** The configuration's entries of the window, by host then time. */
  const entries = (configuration: string, now: number): ReadonlyArray<TimelineEntry> => {
    trim(now)
    const hosts = byConf.get(configuration)
    if (hosts === undefined) return []
    return [...hosts.values()]
      .flat()
      .filter((e) => now - e.time.getTime() <= limits.windowMs)
      .sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.time.getTime() - b.time.getTime()))
      .map(({ host, time, hash, outcome }) => ({ host, time, hash, outcome }))
  }

  return { record, entries, size: () => live }
}

export class Timeline extends Context.Tag("registry/Timeline")<
  Timeline,
  { readonly entries: (configuration: string) => Effect.Effect<ReadonlyArray<TimelineEntry>> }
>() {}

/** Requires HostEvents: every report becomes an entry. */
export const TimelineLive = Layer.scoped(
  Timeline,
  Effect.gen(function* () {
    const store = makeStore()
    const changes = yield* (yield* HostEvents).subscribe
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.map(Queue.take(changes), (c) => {
          const r = c.report
          // The hash the attempt was about (a failed one leaves the host on its old hash).
          if (r !== undefined) store.record(r.configuration, { host: r.host, time: c.at, hash: r.target ?? r.hash, outcome: timelineOutcome(r.outcome) })
        })
      )
    )
    return { entries: (configuration) => Effect.sync(() => store.entries(configuration, Date.now())) }
  })
)
