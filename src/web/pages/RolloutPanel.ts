// The configuration page's rollout: phase, settings, each wave with its hosts, and the pause / resume /
// abort forms while it runs. Lists of hosts are bounded (a wave of thousands shows its first hosts and
// counts the rest by state) so the page stays small.
import { type Html, html, path } from "../Html.js"
import type { RolloutStatus } from "../WebModel.js"
import { shortHash, when } from "./Format.js"

/** Hosts listed per wave (and per waiting/offline/failed list); the rest are counted. */
export const MAX_LISTED = 50
const MAX_EVENTS = 20

const hostChips = (hosts: ReadonlyArray<{ readonly Host: string; readonly State: string; readonly SoakLeftMs?: number | undefined }>): Html => {
  const rest = new Map<string, number>()
  for (const h of hosts.slice(MAX_LISTED)) rest.set(h.State, (rest.get(h.State) ?? 0) + 1)
  return html`${hosts.slice(0, MAX_LISTED).map(
    (h) => html`<span class="chip rstate-${h.State}" title="${h.State}">${h.Host} <small>${h.State}${h.SoakLeftMs !== undefined && ` ${Math.ceil(h.SoakLeftMs / 1000)} s left`}</small></span> `
  )}${rest.size > 0 && html`<span class="muted">and ${hosts.length - MAX_LISTED} more (${[...rest].map(([s, n]) => `${n} ${s}`).join(", ")})</span>`}`
}

const names = (xs: ReadonlyArray<string>): Html | string =>
  xs.length === 0 ? "none" : html`${xs.slice(0, MAX_LISTED).join(", ")}${xs.length > MAX_LISTED && ` and ${xs.length - MAX_LISTED} more`}`

const control = (name: string, action: "pause" | "resume" | "abort", csrf: string) =>
  html`<form method="post" action="${`${path("c", name)}/rollout/${action}`}" class="inline"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" class="${action === "abort" ? "danger" : ""}">${action[0]!.toUpperCase() + action.slice(1)}</button></form> `

export const rolloutPanel = (name: string, r: RolloutStatus | undefined, csrf: string): Html | undefined => {
  if (r === undefined) return undefined
  const live = r.Phase === "running" || r.Phase === "paused"
  return html`<section id="rollout" class="${live ? "rollout live" : "rollout"}"><h2>${live ? "Rollout" : "Last rollout"}: <span class="phase phase-${r.Phase}">${r.Phase}</span>${r.Reason !== undefined && html` <small>(${r.Reason})</small>`}</h2>
<p>From <code title="${r.From}">${shortHash(r.From)}</code> to <code title="${r.To}">${shortHash(r.To)}</code>, started ${when(r.Started)} by ${r.StartedBy};
waves ${r.Settings.Waves}, soak ${Math.ceil(r.Settings.SoakMs / 1000)} s, max failures ${r.Settings.MaxFailures}, on failure ${r.Settings.OnFailure}${r.Settings.Canary.length > 0 && html`, canary ${names(r.Settings.Canary)}`}.</p>
${live && html`<p class="controls">${r.Phase === "running" ? control(name, "pause", csrf) : control(name, "resume", csrf)}${control(name, "abort", csrf)}</p>`}
<table class="waves"><thead><tr><th>Wave</th><th>Admitted</th><th>Hosts</th></tr></thead>
<tbody>${r.Waves.map((w) => html`<tr><td class="num">${w.Wave}</td><td>${w.Admitted === undefined ? html`<span class="muted">waiting</span>` : when(w.Admitted)}</td><td>${w.Hosts.length === 0 ? html`<span class="muted">no host</span>` : hostChips(w.Hosts)}</td></tr>`)}</tbody></table>
<p>Waiting for: ${names(r.WaitingFor)}. Offline: ${names(r.Offline)}. Failed: ${names(r.Failed)}.</p>
${r.Events.length > 0 && html`<details><summary>Events (${r.Events.length})</summary><ul class="events">${r.Events.slice(-MAX_EVENTS).map((e) => html`<li><time>${when(e.Time)}</time> ${e.Text}</li>`)}</ul></details>`}
</section>`
}
