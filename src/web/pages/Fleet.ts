// The fleet page: one row per configuration with its current hash, last change, hosts by state (counts
// and a proportional bar) and a running rollout's progress.
import { type Html, html, path } from "../Html.js"
import { type ConfigSummary, type FleetData, type HostState, hostStates, type PageContext, type RolloutStatus } from "../WebModel.js"
import { ago, shortHash, when, who } from "./Format.js"
import { layout } from "./Layout.js"

const countOf = (s: ConfigSummary, state: HostState): number =>
  ({ current: s.Current, behind: s.Behind, deploying: s.Deploying, failed: s.Failed, offline: s.Offline })[state]

/** Hosts by state as a bar of proportional segments: SVG attributes, as the CSP forbids inline styles. */
export const stateBar = (s: ConfigSummary): Html => {
  if (s.Hosts === 0) return html`<span class="muted">no host</span>`
  let x = 0
  const segments = hostStates.map((state) => {
    const n = countOf(s, state)
    if (n === 0) return undefined
    const w = (n / s.Hosts) * 100
    const rect = html`<rect class="fill-${state}" x="${x.toFixed(2)}" y="0" width="${w.toFixed(2)}" height="8"><title>${n} ${state}</title></rect>`
    x += w
    return rect
  })
  return html`<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="${hostStates.map((st) => `${countOf(s, st)} ${st}`).join(", ")}">${segments}</svg>`
}

export const rolloutProgress = (r: RolloutStatus): Html => {
  const admitted = r.Waves.filter((w) => w.Admitted !== undefined).length
  const hosts = r.Waves.flatMap((w) => w.Hosts)
  const healthy = hosts.filter((h) => h.State === "healthy").length
  return html`<span class="phase phase-${r.Phase}">${r.Phase}</span> wave ${admitted}/${r.Waves.length}, ${healthy}/${hosts.length} healthy${r.Failed.length > 0 && html`, <span class="state-failed">${r.Failed.length} failed</span>`}`
}

const row = (c: FleetData["configurations"][number], ctx: PageContext): Html => {
  const s = c.summary
  const href = path("c", s.Name)
  const running = c.rollout !== undefined && (c.rollout.Phase === "running" || c.rollout.Phase === "paused")
  return html`<tr>
<td><a href="${href}">${s.Name}</a></td>
<td><code title="${s.Hash}">${shortHash(s.Hash)}</code></td>
<td>${c.last === undefined ? "-" : html`<time datetime="${c.last.Time}" title="${when(c.last.Time)}">${ago(c.last.Time, ctx.now)}</time> by <span title="${c.last.Who.Fingerprint}">${who(c.last.Who)}</span>`}</td>
<td class="num">${s.Hosts}</td>
${hostStates.map((st) => html`<td class="num state-${st}">${countOf(s, st)}</td>`)}
<td class="barcell">${stateBar(s)}</td>
<td>${running && c.rollout !== undefined ? rolloutProgress(c.rollout) : "-"}</td>
<td><a href="${`${href}/timeline`}">timeline</a></td>
</tr>`
}

export const fleetPage = (data: FleetData, ctx: PageContext): string =>
  layout(
    {
      title: "Fleet",
      config: "",
      path: "/",
      body: html`<h1>Fleet</h1>
${data.configurations.length === 0
  ? html`<p class="muted">No configuration yet (<code>deployctl addconf</code> makes one).</p>`
  : html`<table class="fleet">
<thead><tr><th>Configuration</th><th>Hash</th><th>Last change</th><th class="num">Hosts</th>${hostStates.map((st) => html`<th class="num">${st}</th>`)}<th>Hosts by state</th><th>Rollout</th><th></th></tr></thead>
<tbody>${data.configurations.map((c) => row(c, ctx))}</tbody>
</table>`}`
    },
    ctx
  )
