// Web view benchmark (docs/web.md): the configuration page of a configuration with 5,000 hosts, built as
// `deployctl web` builds it for each request: decode `status -name N -json` (the registry's own renderer
// makes it), history and rollout, then render the page (sorted, filtered, paged). Target: < 1 s.
//   node --import tsx bench/web.ts [-runs 20] [-hosts 5000]
import { Effect } from "effect"
import type { HostRow } from "../src/registry/HostStatus.js"
import { renderConfiguration } from "../src/registry/StatusView.js"
import { configurationPage } from "../src/web/pages/Configuration.js"
import { decodeConfigurationStatus, decodeHistory } from "../src/web/WebModel.js"
import { parseFlags } from "./lib/flags.js"
import { log, runStandalone, type Bench } from "./lib/main.js"
import { environment, row } from "./lib/report.js"
import { summarize } from "./lib/stats.js"

const H1 = "1".repeat(64)
const H2 = "2".repeat(64)
const outcomes = ["deployed", "deployed", "failed", "deploying", "deployed"]

const hostRow = (i: number): HostRow => ({
  configuration: "p1", host: `host-${String(i).padStart(5, "0")}.example.net`, kind: "agent", fingerprint: "SHA256:bench", address: "10.0.0.1",
  agentVersion: "0.1.0", hash: i % 5 === 1 ? H2 : H1, target: H1, outcome: outcomes[i % 5]!, reason: i % 5 === 2 ? "script exited 1" : "",
  lines: i % 5 === 2 ? ["restarting web", "health check failed"] : [], started: "", durationMs: 1200, since: "2026-12-03T11:00:00.000Z",
  lastReport: "2026-12-03T11:30:00.000Z", lastSeen: "2026-12-03T11:30:00.000Z", connected: i % 5 !== 4
})

const historyJson = (n: number) =>
  JSON.stringify(
    Array.from({ length: n }, (_, i) => ({
      Time: new Date(Date.UTC(2026, 11, 3) - i * 3600_000).toISOString(), Hash: i === 0 ? H1 : `${i}`.padStart(64, "0"),
      Who: { User: "operator", Fingerprint: "SHA256:op", Comment: "alice" },
      Layers: [{ Name: "code", Version: `v${n - i}`, Hash: H2 }, { Name: "conf", Version: `c${(n - i) >> 2}`, Hash: H2 }], Current: i === 0
    }))
  )

export const web: Bench = async (argv) => {
  const f = parseFlags(argv, ["runs", "hosts"])
  const runs = f.int("runs", 20)
  const hosts = f.int("hosts", 5000)
  const started = Date.now()
  const statusText = renderConfiguration("p1", H1, Array.from({ length: hosts }, (_, i) => hostRow(i)), () => "", true)
  const history = historyJson(200)
  const queries = ["", "sort=state&dir=desc&page=3", "state=failed&sort=message"]
  const samples: Array<number> = []
  let bytes = 0
  for (let r = 0; r < runs; r++) {
    const query = queries[r % queries.length]!
    const t0 = performance.now()
    const status = await Effect.runPromise(decodeConfigurationStatus(statusText))
    const hist = await Effect.runPromise(decodeHistory(history))
    const html = configurationPage({ status, history: hist, rollout: undefined }, { csrf: "x", now: new Date(), query: new URLSearchParams(query) })
    samples.push(performance.now() - t0)
    bytes = html.length
  }
  const ours = summarize(samples)
  log(`configuration page, ${hosts} hosts: ${ours.median.toFixed(1)} ms median (${ours.min.toFixed(1)}–${ours.max.toFixed(1)}), ${bytes} bytes of HTML`)
  return {
    name: "web",
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    environment: await environment(),
    settings: { runs, hosts },
    rows: [
      row({
        metric: `configuration page, ${hosts} hosts (decode status ${(statusText.length / 1024 / 1024).toFixed(1)} MiB + history + render)`,
        unit: "ms",
        ours,
        target: { kind: "ours<=", value: 1000 },
        note: "the JSON decode and render deployctl web does per request; the SSH round trips are not included"
      })
    ],
    extra: {}
  }
}

runStandalone(import.meta.url, web)
