// The configuration page's hosts table: filtered by state, sorted by a column, 100 hosts a page, all
// by query parameters (`state`, `sort`, `dir`, `page`) so it works with JavaScript off. Built for
// thousands of hosts: one filter, one sort, one slice; only the page shown is rendered.
import { type Html, html, queryString } from "../Html.js"
import { type HostEntry, type HostState, hostStates } from "../WebModel.js"
import { shortHash, when } from "./Format.js"

export const PAGE_SIZE = 100

export const sortKeys = ["host", "state", "hash", "since", "seen", "message", "version"] as const
export type SortKey = (typeof sortKeys)[number]

export interface HostsQuery {
  readonly state: HostState | undefined
  readonly sort: SortKey
  readonly dir: "asc" | "desc"
  readonly page: number
}

/** Reads the table's parameters; anything unknown falls back to the default (all, by host, page 1). */
export const hostsQuery = (q: URLSearchParams): HostsQuery => {
  const state = q.get("state")
  const sort = q.get("sort")
  const page = Number(q.get("page") ?? "1")
  return {
    state: hostStates.find((s) => s === state),
    sort: sortKeys.find((k) => k === sort) ?? "host",
    dir: q.get("dir") === "desc" ? "desc" : "asc",
    page: Number.isSafeInteger(page) && page >= 1 ? page : 1
  }
}

/** What the MESSAGE column of `status -name` shows: the reason and the last line of output. */
export const messageOf = (h: HostEntry): string => [h.Reason, h.Lines.at(-1)].filter((x) => x !== undefined && x !== "").join(": ")

const hostLabel = (h: HostEntry) => (h.Kind === "poll" ? `${h.Host} (polls from ${h.Address})` : h.Host)
const seenKey = (h: HostEntry) => (h.Connected ? "\uffff" : h.LastSeen)

const keyOf: Record<SortKey, (h: HostEntry) => string | number> = {
  host: hostLabel,
  state: (h) => hostStates.indexOf(h.State),
  hash: (h) => h.Hash,
  since: (h) => h.Since,
  seen: seenKey,
  message: messageOf,
  version: (h) => h.AgentVersion
}

const compare = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0)

/** The hosts of the page asked for, and how many match the filter (the page number clamped to the last). */
export const selectHosts = (hosts: ReadonlyArray<HostEntry>, q: HostsQuery) => {
  const key = keyOf[q.sort]
  const sign = q.dir === "asc" ? 1 : -1
  const matching = (q.state === undefined ? hosts : hosts.filter((h) => h.State === q.state))
    .map((h) => ({ h, k: key(h), name: hostLabel(h) }))
    .sort((a, b) => sign * compare(a.k, b.k) || compare(a.name, b.name))
  const pages = Math.max(1, Math.ceil(matching.length / PAGE_SIZE))
  const page = Math.min(q.page, pages)
  return { total: matching.length, page, pages, hosts: matching.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE).map((x) => x.h) }
}

const link = (q: HostsQuery, change: Partial<HostsQuery>) => {
  const n = { ...q, ...change }
  return (
    queryString({ state: n.state, sort: n.sort === "host" ? undefined : n.sort, dir: n.dir === "asc" ? undefined : n.dir, page: n.page === 1 ? undefined : n.page }) ||
    "?"
  ) + "#hosts"
}

const header = (q: HostsQuery, key: SortKey, label: string) => {
  const active = q.sort === key
  const dir = active && q.dir === "asc" ? "desc" : "asc"
  const arrow = active ? (q.dir === "asc" ? " ▲" : " ▼") : ""
  return html`<th${active && html` aria-sort="${q.dir === "asc" ? "ascending" : "descending"}"`}><a href="${link(q, { sort: key, dir, page: 1 })}">${label}${arrow}</a></th>`
}

const filters = (hosts: ReadonlyArray<HostEntry>, q: HostsQuery) => {
  const count = (s: HostState) => hosts.reduce((n, h) => (h.State === s ? n + 1 : n), 0)
  const item = (label: string, state: HostState | undefined, n: number) =>
    q.state === state
      ? html`<strong class="filter-on">${label} (${n})</strong>`
      : html`<a href="${link(q, { state, page: 1 })}" class="${state === undefined ? "" : `state-${state}`}">${label} (${n})</a>`
  return html`<p class="filters">Show: ${item("all", undefined, hosts.length)} ${hostStates.map((s) => item(s, s, count(s)))}</p>`
}

const pager = (q: HostsQuery, page: number, pages: number, total: number) =>
  pages > 1
    ? html`<nav class="pager" aria-label="host pages">${page > 1 ? html`<a href="${link(q, { page: 1 })}">« first</a> <a href="${link(q, { page: page - 1 })}" rel="prev">‹ previous</a>` : ""}
<span>page ${page} of ${pages} (${total} hosts)</span>
${page < pages ? html`<a href="${link(q, { page: page + 1 })}" rel="next">next ›</a> <a href="${link(q, { page: pages })}">last »</a>` : ""}</nav>`
    : undefined

const hostRow = (h: HostEntry, current: string): Html => html`<tr>
<td class="host">${h.Kind === "poll" ? html`${h.Host} <small class="muted">(polls from ${h.Address})</small>` : h.Host}</td>
<td><span class="state state-${h.State}">${h.State}</span></td>
<td><code title="${h.Hash}" class="${h.Hash !== current ? "other" : ""}">${shortHash(h.Hash)}</code></td>
<td>${when(h.Since)}</td>
<td>${h.Connected ? "connected" : when(h.LastSeen)}</td>
<td class="message">${messageOf(h) || "-"}</td>
<td>${h.AgentVersion || "-"}</td>
</tr>`

export const hostsTable = (hosts: ReadonlyArray<HostEntry>, current: string, query: URLSearchParams): Html => {
  const q = hostsQuery(query)
  const sel = selectHosts(hosts, q)
  const p = { ...q, page: sel.page }
  return html`<section id="hosts"><h2>Hosts</h2>
${filters(hosts, p)}
${sel.total === 0
  ? html`<p class="muted">${hosts.length === 0 ? "No host has reported yet." : "No host in this state."}</p>`
  : html`<table class="hosts">
<thead><tr>${header(p, "host", "Host")}${header(p, "state", "State")}${header(p, "hash", "Hash")}${header(p, "since", "Since")}${header(p, "seen", "Last seen")}${header(p, "message", "Message")}${header(p, "version", "Agent")}</tr></thead>
<tbody>${sel.hosts.map((h) => hostRow(h, current))}</tbody>
</table>
${pager(p, sel.page, sel.pages, sel.total)}`}
</section>`
}
