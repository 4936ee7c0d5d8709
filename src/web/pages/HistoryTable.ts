// The configuration page's history: each state with what changed since the one before it, and a
// Rollback form per past state. The form carries `expect` = the current hash this page shows, so a
// rollback from a stale page is refused by the registry (`-expect`) instead of undoing someone's change.
import { type Html, html, path } from "../Html.js"
import type { HistoryEntry, HistoryLayer } from "../WebModel.js"
import { shortHash, when, who } from "./Format.js"

/**
 * At most this many states are shown (newest first). Given one more, the oldest shown still says what
 * changed (the server asks `history -n 101`).
 */
export const MAX_HISTORY = 100

export type Change =
  | { readonly kind: "added"; readonly name: string; readonly version: string }
  | { readonly kind: "removed"; readonly name: string; readonly version: string }
  | { readonly kind: "changed"; readonly name: string; readonly from: string; readonly to: string }

/** Components added, removed or at another version from `older` to `newer` (in `newer`'s layer order, removals last). */
export const changes = (newer: ReadonlyArray<HistoryLayer>, older: ReadonlyArray<HistoryLayer>): ReadonlyArray<Change> => {
  const before = new Map(older.map((l) => [l.Name, l.Version]))
  const after = new Set(newer.map((l) => l.Name))
  const out: Array<Change> = []
  for (const l of newer) {
    const was = before.get(l.Name)
    if (was === undefined) out.push({ kind: "added", name: l.Name, version: l.Version })
    else if (was !== l.Version) out.push({ kind: "changed", name: l.Name, from: was, to: l.Version })
  }
  for (const l of older) if (!after.has(l.Name)) out.push({ kind: "removed", name: l.Name, version: l.Version })
  return out
}

const changeText = (c: Change): Html =>
  c.kind === "added"
    ? html`<li class="added">+ ${c.name} ${c.version}</li>`
    : c.kind === "removed"
      ? html`<li class="removed">− ${c.name} ${c.version}</li>`
      : html`<li class="changed">${c.name} ${c.from} → ${c.to}</li>`

const whatChanged = (e: HistoryEntry, older: HistoryEntry | undefined): Html => {
  if (older === undefined) return html`<span class="muted">first state</span>`
  const cs = changes(e.Layers, older.Layers)
  if (cs.length > 0) return html`<ul class="changes">${cs.map(changeText)}</ul>`
  return html`<span class="muted">${e.Hash === older.Hash ? "no change" : "layer order changed"}</span>`
}

const rollbackForm = (name: string, e: HistoryEntry, current: string, csrf: string): Html =>
  html`<form method="post" action="${`${path("c", name)}/rollback`}" class="inline">
<input type="hidden" name="csrf" value="${csrf}">
<input type="hidden" name="hash" value="${e.Hash}">
<input type="hidden" name="expect" value="${current}">
<button type="submit" title="${`make ${e.Hash} the current state again`}">Rollback</button>
</form>`

export const historyTable = (name: string, history: ReadonlyArray<HistoryEntry>, current: string, csrf: string): Html => {
  const shown = history.slice(0, MAX_HISTORY)
  return html`<section id="history"><h2>History</h2>
${history.length === 0
  ? html`<p class="muted">No state yet.</p>`
  : html`<table class="history">
<thead><tr><th>Time</th><th>Who</th><th>Hash</th><th>Layers</th><th>What changed</th><th></th></tr></thead>
<tbody>${shown.map(
      (e, i) => html`<tr class="${e.Current ? "current" : ""}">
<td>${when(e.Time)}</td>
<td title="${e.Who.Fingerprint}">${who(e.Who)}</td>
<td><code title="${e.Hash}">${shortHash(e.Hash)}</code>${e.Signatures !== undefined && e.Signatures.length > 0 && html` <span class="signed" title="${e.Signatures.map((s) => s.Fingerprint).join(", ")}">signed</span>`}${e.Rollout !== undefined && html` <span class="phase phase-${e.Rollout.Phase}" title="${e.Rollout.Reason ?? ""}">rollout ${e.Rollout.Phase}</span>`}</td>
<td>${e.Layers.map((l, j) => html`${j > 0 && ", "}<span class="layer">${l.Name}:${l.Version}</span>`)}</td>
<td>${whatChanged(e, history[i + 1])}</td>
<td>${e.Current ? html`<strong>current</strong>` : e.Hash === current ? "" : rollbackForm(name, e, current, csrf)}</td>
</tr>`
    )}</tbody>
</table>
${history.length > shown.length && html`<p class="muted">Older states are not shown (<code>deployctl history -name …</code> lists them all).</p>`}`}
</section>`
}
