// `status` (docs/deployctl.md): each host's state against the configuration's current hash, and the
// text and JSON renderings. Pure: HostStatus gives the rows, Storage the current states.
//
// States: current (runs the current hash), behind (runs another and has not failed on the current),
// deploying (said so and has not finished), failed (its last attempt at the current hash failed or was
// refused), offline (an agent with no open watch session). Hosts that only poll (kind "poll") are
// current or behind by the hash they were last served.
import { quote } from "../domain/LogText.js"
import type { HostRow } from "./HostStatus.js"

export type HostState = "current" | "behind" | "deploying" | "failed" | "offline"

const failures = new Set(["failed", "unpack-refused", "download-failed", "rolled-back", "refused"])

export const stateOf = (row: HostRow, current: string): HostState => {
  if (row.kind === "poll") return row.hash === current ? "current" : "behind"
  if (!row.connected) return "offline"
  if (row.outcome === "deploying" && row.target === current) return "deploying"
  if (row.hash === current && row.hash !== "") return "current"
  if (failures.has(row.outcome) && row.target === current) return "failed"
  return "behind"
}

/** Rows of poll-only hosts whose key and address also run a watching agent are the same machine polling. */
const visible = (rows: ReadonlyArray<HostRow>) => {
  const agents = new Set(rows.filter((r) => r.kind === "agent").map((r) => `${r.configuration}\u0000${r.fingerprint}\u0000${r.address}`))
  return rows.filter((r) => r.kind === "agent" || !agents.has(`${r.configuration}\u0000${r.fingerprint}\u0000${r.address}`))
}

const message = (r: HostRow) => {
  const last = r.lines.at(-1)
  return [r.reason, last].filter((x) => x !== undefined && x !== "").join(": ")
}

export const hostJson = (r: HostRow, current: string) => ({
  Host: r.host,
  Kind: r.kind,
  State: stateOf(r, current),
  Hash: r.hash,
  Target: r.target,
  Outcome: r.outcome,
  Reason: r.reason,
  Lines: r.lines,
  Since: r.since,
  LastSeen: r.lastSeen,
  LastReport: r.lastReport,
  Connected: r.connected,
  AgentVersion: r.agentVersion,
  Fingerprint: r.fingerprint,
  Address: r.address,
  Started: r.started,
  DurationMs: r.durationMs
})

const short = (h: string) => (h === "" ? "-" : h.slice(0, 12))
const second = (t: string) => (t === "" ? "-" : t.replace(/\.\d+Z$/, "Z"))

/** `status -name N`: a header line, then one row per host. */
export const renderConfiguration = (
  name: string,
  current: string,
  rows: ReadonlyArray<HostRow>,
  tabwrite: (rows: ReadonlyArray<ReadonlyArray<string>>) => string,
  json: boolean
): string => {
  const shown = visible(rows)
  if (json) return `${JSON.stringify({ Name: name, Hash: current, Hosts: shown.map((r) => hostJson(r, current)) })}\n`
  const header = `configuration ${name} at ${current}: ${summaryText(counts(shown, current))}\n`
  if (shown.length === 0) return header
  return (
    header +
    tabwrite([
      ["HOST", "STATE", "HASH", "SINCE", "LAST SEEN", "MESSAGE"],
      ...shown.map((r) => [
        r.kind === "poll" ? `${r.host} (polls from ${r.address})` : quoteIfNeeded(r.host),
        stateOf(r, current),
        short(r.hash),
        second(r.since),
        r.connected ? "connected" : second(r.lastSeen),
        quoteIfNeeded(message(r)) || "-"
      ])
    ])
  )
}

/** Host names and messages come from agents: quoted when they hold anything but plain printable text. */
const quoteIfNeeded = (s: string) => (/^[\x21-\x7e]*(?: [\x21-\x7e]+)*$/.test(s) ? s : quote(s, 300))

export interface Counts {
  readonly hosts: number
  readonly current: number
  readonly behind: number
  readonly deploying: number
  readonly failed: number
  readonly offline: number
}

export const counts = (rows: ReadonlyArray<HostRow>, current: string): Counts => {
  const c = { hosts: 0, current: 0, behind: 0, deploying: 0, failed: 0, offline: 0 }
  for (const r of visible(rows)) {
    c.hosts++
    c[stateOf(r, current)]++
  }
  return c
}

const summaryText = (c: Counts) =>
  `${c.hosts} host(s), ${c.current} current, ${c.behind} behind, ${c.deploying} deploying, ${c.failed} failed, ${c.offline} offline`

/** `status` without -name: one line per configuration with counts. */
export const renderSummary = (
  configurations: ReadonlyArray<{ readonly name: string; readonly hash: string }>,
  rows: ReadonlyArray<HostRow>,
  tabwrite: (rows: ReadonlyArray<ReadonlyArray<string>>) => string,
  json: boolean
): string => {
  const by = new Map<string, Array<HostRow>>()
  for (const r of rows) by.set(r.configuration, [...(by.get(r.configuration) ?? []), r])
  const list = configurations.map((c) => ({ ...c, counts: counts(by.get(c.name) ?? [], c.hash) }))
  if (json) {
    return `${JSON.stringify(list.map((c) => ({ Name: c.name, Hash: c.hash, Hosts: c.counts.hosts, Current: c.counts.current, Behind: c.counts.behind, Deploying: c.counts.deploying, Failed: c.counts.failed, Offline: c.counts.offline })))}\n`
  }
  if (list.length === 0) return ""
  return tabwrite([
    ["CONFIGURATION", "HASH", "HOSTS", "CURRENT", "BEHIND", "DEPLOYING", "FAILED", "OFFLINE"],
    ...list.map((c) => [c.name, short(c.hash), ...[c.counts.hosts, c.counts.current, c.counts.behind, c.counts.deploying, c.counts.failed, c.counts.offline].map(String)])
  ])
}
