// `rollout -name CONF -status [-json]`: the rollout's settings, each wave with its hosts and their
// states (RolloutPlan.status), what the next admission waits for, and every stored event. Also the
// events' texts and rows (for -status and `history`), bounded whatever the fleet's size.
import { hostList, MAX_NAMED_HOSTS, type HostView, type RolloutChange, type RolloutSpec, type RolloutState, type WaveSize } from "../domain/Rollout.js"
import { rfc3339Seconds } from "../domain/Time.js"
import { status } from "./RolloutPlan.js"
import type { StateInfo } from "./StorageRows.js"

/** One stored step: when, what, and who made it (an operator's label, "driver", or "" in rows older than migration 5). */
export interface RolloutEventRow {
  readonly time: string
  readonly text: string
  readonly actor: string
}

export interface RolloutRecord {
  readonly state: RolloutState
  readonly target: StateInfo
  readonly started: Date
  readonly events: ReadonlyArray<RolloutEventRow>
}

/** Who made the steps the registry takes on its own (admissions, failures, halts, completion). */
export const DRIVER = "driver"

export const wavesText = (ws: ReadonlyArray<WaveSize>) => ws.map((w) => (w._tag === "Hosts" ? `${w.count}` : `${w.percent}%`)).join(",")

export const startedText = (spec: RolloutSpec, soak: string) =>
  `started: ${spec.from} -> ${spec.to}; waves ${wavesText(spec.waves)}, soak ${soak}, max-failures ${spec.maxFailures}, ` +
  `on-failure ${spec.onFailure}${spec.canary.length > 0 ? `, canary ${hostList(spec.canary)}` : ""}`

const phaseText = (c: Extract<RolloutChange, { _tag: "PhaseChanged" }>) =>
  // An abort's reason only names who aborted: the row's actor says it.
  c.reason !== undefined && c.phase !== "aborted" ? `${c.phase}: ${c.reason}` : c.phase

/**
 * The rows one step writes: one per admitted wave and phase change, and one for all the hosts that
 * failed in the step, written only while the rollout has named fewer than MAX_NAMED_HOSTS failed hosts
 * (-status lists them all). So a rollout writes at most 2 + waves + MAX_NAMED_HOSTS rows plus the
 * operator's pauses and resumes, however many hosts it has. `failedBefore`: hosts failed before the step.
 */
export const eventRows = (changes: ReadonlyArray<RolloutChange>, actor: string, failedBefore: number): Array<{ readonly text: string; readonly actor: string }> => {
  const rows: Array<{ readonly text: string; readonly actor: string }> = []
  const failed = changes.flatMap((c) => (c._tag === "HostFailed" ? [c] : []))
  if (failed.length > 0 && failedBefore < MAX_NAMED_HOSTS) {
    rows.push({
      actor,
      text: failed.length === 1 ? `host ${failed[0]!.host} failed: ${failed[0]!.outcome}` : `${failed.length} hosts failed: ${hostList(failed.map((f) => `${f.host} (${f.outcome})`))}`
    })
  }
  for (const c of changes) {
    if (c._tag === "WaveAdmitted") rows.push({ actor, text: `wave ${c.wave} admitted: ${c.hosts.length === 0 ? "(no host)" : hostList(c.hosts)}` })
    else if (c._tag === "PhaseChanged") rows.push({ actor, text: phaseText(c) })
  }
  return rows
}

/** An event as one line of text: `TEXT (by ACTOR)`. */
export const eventLine = (e: RolloutEventRow) => `${e.text}${e.actor !== "" ? ` (by ${e.actor})` : ""}`

const seconds = (ms: number) => `${Math.max(0, Math.ceil(ms / 100) / 10)}s`

export const renderRollout = (r: RolloutRecord, hosts: ReadonlyArray<HostView>, now: number, json: boolean): string => {
  const s = r.state
  const st = status(s, hosts, now)
  if (json) {
    return `${JSON.stringify({
      Name: s.spec.configuration,
      From: s.spec.from,
      To: s.spec.to,
      Phase: st.phase,
      ...(st.reason !== undefined ? { Reason: st.reason } : {}),
      Started: rfc3339Seconds(r.started),
      StartedBy: r.target.who.label,
      Settings: { Waves: wavesText(s.spec.waves), SoakMs: s.spec.soakMs, MaxFailures: s.spec.maxFailures, OnFailure: s.spec.onFailure, Canary: s.spec.canary },
      Waves: st.waves.map((w) => ({
        Wave: w.wave,
        ...(w.admittedAt !== undefined ? { Admitted: rfc3339Seconds(new Date(w.admittedAt)) } : {}),
        Hosts: w.hosts.map((h) => ({ Host: h.host, State: h.state, ...(h.soakLeftMs !== undefined ? { SoakLeftMs: h.soakLeftMs } : {}) }))
      })),
      WaitingFor: st.waitingFor.map((h) => h.host),
      Offline: st.offline,
      Failed: st.failed,
      Events: r.events.map((e) => ({ Time: e.time, ...(e.actor !== "" ? { By: e.actor } : {}), Text: e.text }))
    })}\n`
  }
  const out = [
    `rollout of "${s.spec.configuration}": ${st.phase}${st.reason !== undefined ? ` (${st.reason})` : ""}`,
    `from ${s.spec.from}`,
    `to   ${s.spec.to}`,
    `started ${rfc3339Seconds(r.started)} by ${r.target.who.label}; waves ${wavesText(s.spec.waves)}, soak ${seconds(s.spec.soakMs)}, ` +
      `max-failures ${s.spec.maxFailures}, on-failure ${s.spec.onFailure}${s.spec.canary.length > 0 ? `, canary ${s.spec.canary.join(",")}` : ""}`
  ]
  for (const w of st.waves) {
    const hs = w.hosts.map((h) => `${h.host} ${h.state}${h.soakLeftMs !== undefined ? ` (${seconds(h.soakLeftMs)} left)` : ""}`)
    out.push(`wave ${w.wave} ${w.admittedAt !== undefined ? `admitted ${rfc3339Seconds(new Date(w.admittedAt))}` : "waiting"}: ${hs.join(", ") || "(no host)"}`)
  }
  const list = (xs: ReadonlyArray<string>) => (xs.length === 0 ? "(none)" : xs.join(", "))
  out.push(`waiting for: ${list(st.waitingFor.map((h) => `${h.host} (${h.state})`))}`)
  out.push(`offline: ${list(st.offline)}`)
  out.push(`failed: ${list(st.failed)}`)
  out.push("events:")
  for (const e of r.events) out.push(`  ${rfc3339Seconds(new Date(e.time))}  ${eventLine(e)}`)
  return out.join("\n") + "\n"
}
