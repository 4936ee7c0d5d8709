// `rollout -name CONF -status [-json]`: the rollout's settings, each wave with its hosts and their
// states (RolloutPlan.status), what the next admission waits for, and every stored event.
import type { HostView, RolloutState, WaveSize } from "../domain/Rollout.js"
import { rfc3339Seconds } from "../domain/Time.js"
import { status } from "./RolloutPlan.js"
import type { StateInfo } from "./StorageRows.js"

export interface RolloutRecord {
  readonly state: RolloutState
  readonly target: StateInfo
  readonly started: Date
  readonly events: ReadonlyArray<{ readonly time: string; readonly text: string }>
}

export const wavesText = (ws: ReadonlyArray<WaveSize>) => ws.map((w) => (w._tag === "Hosts" ? `${w.count}` : `${w.percent}%`)).join(",")

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
      Events: r.events.map((e) => ({ Time: e.time, Text: e.text }))
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
  for (const e of r.events) out.push(`  ${rfc3339Seconds(new Date(e.time))}  ${e.text}`)
  return out.join("\n") + "\n"
}
