// The configuration page: current state and host counts, the running rollout, the hosts table and the
// history with its Rollback forms (each part in its own module).
import { html, path } from "../Html.js"
import { type ConfigurationData, hostStates, type PageContext } from "../WebModel.js"
import { stateBar } from "./Fleet.js"
import { shortHash } from "./Format.js"
import { historyTable } from "./HistoryTable.js"
import { hostsTable } from "./HostsTable.js"
import { layout } from "./Layout.js"
import { rolloutPanel } from "./RolloutPanel.js"

export const configurationPage = (data: ConfigurationData, ctx: PageContext): string => {
  const { status, history, rollout } = data
  const count = (s: string) => status.Hosts.reduce((n, h) => (h.State === s ? n + 1 : n), 0)
  const summary = {
    Name: status.Name,
    Hash: status.Hash,
    Hosts: status.Hosts.length,
    Current: count("current"),
    Behind: count("behind"),
    Deploying: count("deploying"),
    Failed: count("failed"),
    Offline: count("offline")
  }
  return layout(
    {
      title: status.Name,
      config: status.Name,
      path: path("c", status.Name),
      body: html`<h1>${status.Name}</h1>
<p class="summary">Current state <code class="current-hash" title="${status.Hash}">${shortHash(status.Hash)}</code> ·
${summary.Hosts} host(s): ${hostStates.map((s, i) => html`${i > 0 && ", "}<span class="state-${s}">${count(s)} ${s}</span>`)} ·
<a href="${`${path("c", status.Name)}/timeline`}">timeline of the last 24 h</a></p>
<div class="barwide">${stateBar(summary)}</div>
${rolloutPanel(status.Name, rollout, ctx.csrf)}
${hostsTable(status.Hosts, status.Hash, ctx.query)}
${historyTable(status.Name, history, status.Hash, ctx.csrf)}`
    },
    ctx
  )
}
