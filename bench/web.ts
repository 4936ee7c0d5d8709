// Web view benchmark (docs/web.md), the configuration page of a configuration with 5,000 hosts:
//  - served: GET /c/NAME from a running `deployctl web` against a registry that knows 5,000 hosts (rows
//    written into its database while it is stopped, as bench/metrics.ts does): SSH round trips, decode,
//    render, HTTP. Target: < 1 s.
//  - rendered: what deployctl web does per request without the SSH round trips, in this process: decode
//    `status -name N -json` (the registry's own renderer makes it) and history, render (sorted, filtered, paged).
//   node --import tsx bench/web.ts [-runs 20] [-hosts 5000]
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import { rm } from "node:fs/promises"
import * as path from "node:path"
import { Effect } from "effect"
import { tempDir } from "../test/support/keys.js"
import { tinyTarGz } from "./lib/data.js"
import type { HostRow } from "../src/registry/HostStatus.js"
import { renderConfiguration } from "../src/registry/StatusView.js"
import { configurationPage } from "../src/web/pages/Configuration.js"
import { decodeConfigurationStatus, decodeHistory } from "../src/web/WebModel.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { stopChild } from "./lib/proc.js"
import { addVersionViaSftp, dist, startRegistry, sshExec } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
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

// better-sqlite3 (the registry's own driver) ships no types; what this file uses of it:
interface Db {
  prepare(sql: string): { run(...params: ReadonlyArray<unknown>): unknown }
  transaction(f: () => void): () => void
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => Db

/** GET /c/p1 from `deployctl web` against a registry with `hosts` hosts on p1: ms per request. */
const served = async (hosts: number, runs: number, cleanup: Cleanup): Promise<Row> => {
  const data = path.join(await tempDir("bench-web-"), "data")
  cleanup.add(() => rm(path.dirname(data), { recursive: true, force: true }))
  const setup = await startRegistry({ cipher: "aes128-gcm@openssh.com", dataDir: data })
  const layer = await tinyTarGz("web-v1", "v1\n")
  await addVersionViaSftp(setup, layer.path, layer.sha256, "m", "v1")
  await sshExec(setup, "addconf -name p1 -layer m:v1")
  const hash = /Hash:\s+([0-9a-f]{64})/.exec((await sshExec(setup, "showconf -name p1 -v")).stdout)![1]!
  await setup.stop()
  const db = new Database(path.join(data, "state.db"))
  const now = new Date().toISOString()
  const insert = db.prepare(`INSERT INTO host_status (configuration, host, kind, fingerprint, address, agent_version, hash, outcome, since, last_report, last_seen)
    VALUES ('p1', ?, 'agent', 'SHA256:bench', '10.0.0.1', '0.1.0', ?, ?, ?, ?, ?)`)
  db.transaction(() => {
    for (let h = 0; h < hosts; h++) insert.run(`host-${String(h).padStart(5, "0")}.example.net`, h % 3 === 0 ? "0".repeat(64) : hash, h % 7 === 0 ? "failed" : "deployed", now, now, now)
  })()
  db.close()
  const reg = await startRegistry({ cipher: "aes128-gcm@openssh.com", dataDir: data })
  cleanup.add(() => reg.stop())
  const web = spawn(process.execPath, [dist.ctl, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "web"], { stdio: ["ignore", "pipe", "inherit"] })
  cleanup.add(() => stopChild(web))
  const url = await new Promise<string>((resolve, reject) => {
    let out = ""
    web.stdout.on("data", (b: Buffer) => {
      out += b.toString()
      if (out.includes("\n")) resolve(out.split("\n")[0]!)
    })
    web.once("exit", (code) => reject(new Error(`deployctl web exited ${code}`)))
  })
  const first = await fetch(url, { redirect: "manual" })
  const cookie = (first.headers.get("set-cookie") ?? "").split(";")[0]!
  const page = new URL("/c/p1", url).toString()
  const samples: Array<number> = []
  let bytes = 0
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now()
    const res = await fetch(`${page}${r % 2 === 1 ? "?sort=state&dir=desc&page=3" : ""}`, { headers: { cookie } })
    const body = await res.text()
    samples.push(performance.now() - t0)
    if (res.status !== 200 || !body.includes(`${hosts} host(s)`)) throw new Error(`GET /c/p1: ${res.status} ${body.slice(0, 300)}`)
    bytes = body.length
  }
  const ours = summarize(samples)
  log(`served: GET /c/p1 with ${hosts} hosts: ${ours.median.toFixed(1)} ms median (${ours.min.toFixed(1)}–${ours.max.toFixed(1)}), ${bytes} bytes`)
  return row({
    metric: `configuration page served, ${hosts} hosts (GET /c/NAME from deployctl web: SSH round trips, decode, render)`,
    unit: "ms",
    ours,
    target: { kind: "ours<=", value: 1000 },
    note: "a registry whose host rows were written into its database; HTTP from this process"
  })
}

export const web: Bench = async (argv) => {
  const f = parseFlags(argv, ["runs", "hosts"])
  const runs = f.int("runs", 20)
  const hosts = f.int("hosts", 5000)
  const started = Date.now()
  const cleanup = new Cleanup()
  let servedRow: Row
  try {
    servedRow = await served(hosts, runs, cleanup)
  } finally {
    await cleanup.run()
  }
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
      servedRow,
      row({
        metric: `configuration page rendered, ${hosts} hosts (decode status ${(statusText.length / 1024 / 1024).toFixed(1)} MiB + history + render)`,
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
