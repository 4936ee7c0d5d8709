// The timeline page: an SVG of the last 24 h of deploy outcomes, time across and hosts down, one mark
// per outcome coloured by it, so a bad wave shows as a column of red. Drawn on the server (no script)
// and bounded: at most MAX_ROWS hosts and MAX_MARKS marks, whatever the registry sends.
import { type Html, html, path } from "../Html.js"
import { type PageContext, type TimelineData, type TimelineEntry, timelineOutcomes } from "../WebModel.js"
import { shortHash, when } from "./Format.js"
import { layout } from "./Layout.js"

export const MAX_ROWS = 300
export const MAX_MARKS = 20_000
const DAY = 24 * 3600 * 1000
const LABEL = 190
const PLOT = 760
const ROW = 14
const TOP = 22

const label = (s: string) => ([...s].length > 26 ? `${[...s].slice(0, 25).join("")}…` : s)

/** Entries of the window [now − 24 h, now], grouped by host in name order, both bounds applied. */
export const timelineRows = (entries: ReadonlyArray<TimelineEntry>, now: Date) => {
  const end = now.getTime()
  const start = end - DAY
  const byHost = new Map<string, Array<{ readonly e: TimelineEntry; readonly t: number }>>()
  for (const e of entries) {
    const t = new Date(e.Time).getTime()
    if (!(t >= start && t <= end)) continue
    const list = byHost.get(e.Host)
    if (list === undefined) byHost.set(e.Host, [{ e, t }])
    else list.push({ e, t })
  }
  const hosts = [...byHost.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  let marks = 0
  const rows = hosts.slice(0, MAX_ROWS).map((host) => {
    const list = byHost.get(host)!.sort((a, b) => a.t - b.t)
    const keep = list.slice(Math.max(0, list.length - Math.max(0, MAX_MARKS - marks)))
    marks += keep.length
    return { host, marks: keep }
  })
  return { start, end, rows, hidden: hosts.length - rows.length, marks }
}

export const timelineSvg = (entries: ReadonlyArray<TimelineEntry>, now: Date): Html => {
  const { start, end, rows, hidden } = timelineRows(entries, now)
  const x = (t: number) => (LABEL + ((t - start) / (end - start)) * PLOT).toFixed(1)
  const height = TOP + Math.max(1, rows.length) * ROW + 6
  const ticks = Array.from({ length: 9 }, (_, i) => start + (i * DAY) / 8)
  return html`<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${LABEL + PLOT + 24} ${height}" width="${LABEL + PLOT + 24}" height="${height}" role="img" aria-label="deploy outcomes per host over the last 24 hours">
${ticks.map((t) => html`<line class="tick" x1="${x(t)}" y1="${TOP - 4}" x2="${x(t)}" y2="${height}"/><text class="ticklabel" x="${x(t)}" y="12" text-anchor="middle">${new Date(t).toISOString().slice(11, 16)}</text>`)}
${rows.map((r, i) => {
  const y = TOP + i * ROW
  return html`<g><text class="hostlabel" x="${LABEL - 6}" y="${y + 10}" text-anchor="end"><title>${r.host}</title>${label(r.host)}</text><line class="lane" x1="${LABEL}" y1="${y + 6}" x2="${LABEL + PLOT}" y2="${y + 6}"/>${r.marks.map(
    (m) => html`<rect class="outcome-${m.e.Outcome}" x="${(Number(x(m.t)) - 1.5).toFixed(1)}" y="${y + 1}" width="3" height="10"><title>${r.host} ${m.e.Outcome} ${shortHash(m.e.Hash)} at ${when(m.e.Time)}</title></rect>`
  )}</g>`
})}
${rows.length === 0 && html`<text class="muted" x="${LABEL}" y="${TOP + 10}">no deploy in the last 24 h</text>`}
</svg>${hidden > 0 && html`<p class="muted">${hidden} more host(s) not drawn.</p>`}`
}

export const legend = (): Html =>
  html`<ul class="legend">${timelineOutcomes.map((o) => html`<li><svg width="12" height="12" aria-hidden="true"><rect class="outcome-${o}" width="12" height="12"/></svg> ${o}</li>`)}</ul>`

export const timelinePage = (data: TimelineData, ctx: PageContext): string => {
  const start = ctx.now.getTime() - DAY
  const inWindow = data.entries.filter((e) => new Date(e.Time).getTime() >= start)
  const counts = timelineOutcomes.map((o) => [o, inWindow.reduce((n, e) => (e.Outcome === o ? n + 1 : n), 0)] as const)
  return layout(
    {
      title: `${data.name} timeline`,
      config: data.name,
      path: `${path("c", data.name)}/timeline`,
      body: html`<h1>${data.name}: the last 24 h</h1>
<p>Deploy outcomes per host, UTC, up to ${when(ctx.now.toISOString())}: ${counts.map(([o, n], i) => html`${i > 0 && ", "}${n} ${o}`)}. <a href="${path("c", data.name)}">Back to the configuration</a></p>
${legend()}
<div class="timeline-wrap">${timelineSvg(data.entries, ctx.now)}</div>`
    },
    ctx
  )
}
