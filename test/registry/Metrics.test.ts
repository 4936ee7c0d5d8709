// deploy-registry -metrics against real tools: Debian's promtool lints what /metrics serves, a real
// prometheus scrapes a running registry, and promtool accepts the alert rules of docs/metrics.md.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { rm, writeFile } from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import { addVersion, run } from "../agent/operator.js"
import { tarGz } from "../agent/fixtures.js"
import { connectClient, makeKey, repoRoot, runProgram, ssh, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })

const until = async <A>(what: string, f: () => Promise<A | undefined>, ms = 30_000): Promise<A> => {
  const end = Date.now() + ms
  for (;;) {
    const a = await f().catch(() => undefined)
    if (a !== undefined) return a
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** The one ```yaml block under "## Alert rules" in docs/metrics.md. */
export const alertRules = (): string => {
  const doc = readFileSync(path.join(repoRoot, "docs/metrics.md"), "utf8")
  const section = doc.slice(doc.indexOf("## Alert rules"))
  const m = /```yaml\n([\s\S]*?)```/.exec(section)
  if (!m) throw new Error("docs/metrics.md has no yaml block under ## Alert rules")
  return m[1]!
}

const promtool = (args: ReadonlyArray<string>, input = "") => runProgram("promtool", args, { input })

describe("deploy-registry -metrics", () => {
  let reg: TestRegistry
  let metricsUrl: string
  const scrape = async (accept?: string) => {
    const res = await fetch(metricsUrl, accept ? { headers: { accept } } : {})
    return { type: res.headers.get("content-type") ?? "", body: await res.text() }
  }
  const sample = (body: string, series: string): number | undefined => {
    const line = body.split("\n").find((l) => l.startsWith(series + " "))
    return line === undefined ? undefined : Number(line.slice(series.length + 1))
  }

  beforeAll(async () => {
    reg = await startRegistry({ extraArgs: ["-metrics", "127.0.0.1:0"] })
    const port = await until("the metrics address in the log", async () => /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(reg.log())?.[1])
    metricsUrl = `http://127.0.0.1:${port}/metrics`
  })
  afterAll(async () => {
    await reg?.stop()
    if (reg) await rm(reg.dir, { recursive: true, force: true })
  })

  it("counts commands and refused logins with bounded labels, and promtool accepts both formats' text", async () => {
    expect((await ssh(reg, ["components"])).code).toBe(0)
    expect((await ssh(reg, ["showconf", "-name", "nosuchconf"])).code).toBe(1)
    const keyDir = await tempDir("metrics-key-")
    const stranger = await makeKey(keyDir, "stranger", "stranger@test")
    expect((await ssh(reg, ["components"], { key: stranger.privatePath })).code).not.toBe(0)
    await rm(keyDir, { recursive: true, force: true })

    const { type, body } = await scrape()
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/)
    expect(sample(body, 'deploy_registry_commands_total{command="components",outcome="ok"}')).toBe(1)
    expect(sample(body, 'deploy_registry_commands_total{command="showconf",outcome="error"}')).toBe(1)
    expect(sample(body, 'deploy_registry_command_duration_seconds_count{command="components"}')).toBe(1)
    expect(sample(body, 'deploy_registry_auth_failures_total{reason="not_listed"}')).toBeGreaterThanOrEqual(1)
    expect(sample(body, 'deploy_registry_connections_total{role="operator",outcome="login"}')).toBe(2)
    expect(sample(body, 'deploy_registry_connections_total{role="none",outcome="refused"}')).toBe(1)
    expect(sample(body, 'deploy_registry_bytes_total{role="operator",direction="in"}')).toBeGreaterThan(0)
    expect(sample(body, "process_resident_memory_bytes")).toBeGreaterThan(0)
    expect(sample(body, "process_open_fds")).toBeGreaterThan(0)
    // Never a key, a user or an address as a label value.
    for (const secret of [stranger.fingerprint, reg.operator.fingerprint, "stranger", "nosuchconf", "127.0.0.1"]) expect(body).not.toContain(secret)

    const lint = await promtool(["check", "metrics"], body)
    expect(lint.stderr + lint.stdout).toBe("")
    expect(lint.code).toBe(0)

    const om = await scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
    expect(om.type).toMatch(/^application\/openmetrics-text; version=1\.0\.0/)
    expect(om.body.endsWith("# EOF\n")).toBe(true)
    expect(om.body).toContain("# TYPE deploy_registry_commands counter\n")
    expect(om.body).toContain('deploy_registry_commands_total{command="components",outcome="ok"} 1\n')
  })

  it("counts watchers, hosts by state, deploy outcomes and propagation from an agent's session, never its host name", async () => {
    await addVersion(reg, "code", "v1", tarGz([{ path: "a", type: "file", content: "1" }]))
    await run(reg, "addconf -name m1 -layer code:v1")
    const hash = /Hash:\t([0-9a-f]{64})/.exec(await run(reg, "showconf -name m1 -v"))![1]!
    const agent = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
    agent.on("error", () => undefined)
    try {
      const host = "web<b>1"
      const channel = await new Promise<import("ssh2").ClientChannel>((resolve, reject) =>
        agent.exec(`watch -name m1 -host '${host}' -version 0.1.0`, (err, ch) => (err ? reject(err) : resolve(ch)))
      )
      let got = ""
      channel.on("data", (b: Buffer) => (got += b.toString()))
      await until("the first state line", async () => (got.includes('"type":"state"') ? true : undefined))
      const ping = setInterval(() => channel.write('{"type":"ping"}\n'), 200)
      channel.write(`${JSON.stringify({ type: "report", report: { host, agentVersion: "0.1.0", configuration: "m1", hash, outcome: "deployed" } })}\n`)
      const body = await until("the report in the metrics", async () => {
        const b = (await scrape()).body
        return sample(b, 'deploy_registry_hosts{configuration="m1",state="current"}') === 1 ? b : undefined
      })
      clearInterval(ping)
      expect(sample(body, "deploy_registry_watchers_connected")).toBe(1)
      expect(sample(body, 'deploy_registry_hosts{configuration="m1",state="behind"}')).toBe(0)
      expect(sample(body, 'deploy_registry_deploy_outcomes_total{configuration="m1",outcome="deployed"}')).toBe(1)
      expect(sample(body, "deploy_registry_propagation_seconds_count")).toBe(1)
      expect(body).not.toContain("web")
      expect(body).not.toContain(hash)
      expect((await promtool(["check", "metrics"], body)).code).toBe(0)
    } finally {
      agent.end()
    }
  })

  it("counts rollouts by state as they start, pause and end, without names", async () => {
    await addVersion(reg, "code", "v2", tarGz([{ path: "a", type: "file", content: "2" }]))
    const before = (await scrape()).body
    for (const state of ["running", "paused", "halted"]) expect(sample(before, `deploy_registry_rollouts{state="${state}"}`)).toBe(0)
    expect(sample(before, 'deploy_registry_rollouts_ended_total{outcome="aborted"}')).toBe(0)
    await run(reg, "addconf -name m2 -layer code:v1")
    // One watching host that never reports the target healthy: the rollout stays in its first wave.
    const agent = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
    agent.on("error", () => undefined)
    const channel = await new Promise<import("ssh2").ClientChannel>((resolve, reject) =>
      agent.exec("watch -name m2 -host h1 -version 0.1.0", (err, ch) => (err ? reject(err) : resolve(ch)))
    )
    let got = ""
    channel.on("data", (b: Buffer) => (got += b.toString()))
    await until("the first state line", async () => (got.includes('"type":"state"') ? true : undefined))
    await run(reg, "rollout -name m2 -component code -version v2 -canary h1 -soak 1h")
    expect(sample((await scrape()).body, 'deploy_registry_rollouts{state="running"}')).toBe(1)
    await run(reg, "rollout -name m2 -pause")
    const paused = (await scrape()).body
    expect(sample(paused, 'deploy_registry_rollouts{state="running"}')).toBe(0)
    expect(sample(paused, 'deploy_registry_rollouts{state="paused"}')).toBe(1)
    await run(reg, "rollout -name m2 -abort")
    const ended = (await scrape()).body
    for (const state of ["running", "paused", "halted"]) expect(sample(ended, `deploy_registry_rollouts{state="${state}"}`)).toBe(0)
    expect(sample(ended, 'deploy_registry_rollouts_ended_total{outcome="aborted"}')).toBe(1)
    // Bounded labels: no configuration or host on the rollout series (configurations are labels elsewhere).
    const rolloutSeries = ended.split("\n").filter((l) => l.startsWith("deploy_registry_rollouts"))
    expect(rolloutSeries).toHaveLength(6)
    for (const l of rolloutSeries) expect(l).not.toMatch(/m2|h1|configuration/)
    expect(ended).not.toContain("h1")
    expect((await promtool(["check", "metrics"], ended)).code).toBe(0)
    agent.end()
  })

  it("a real prometheus scrapes it: up == 1 and the command counter moves", async () => {
    const dir = await tempDir("prometheus-")
    const port = await freePort()
    const target = new URL(metricsUrl).host
    await writeFile(
      path.join(dir, "prometheus.yml"),
      `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: deploy-registry\n    static_configs:\n      - targets: ["${target}"]\n`
    )
    const prom = spawn("prometheus", [
      `--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`
    ], { stdio: "ignore" })
    try {
      const query = async (q: string): Promise<number | undefined> => {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`)
        const json = (await res.json()) as { data?: { result?: Array<{ value: [number, string] }> } }
        const v = json.data?.result?.[0]?.value[1]
        return v === undefined ? undefined : Number(v)
      }
      const commands = 'sum(deploy_registry_commands_total{command="components"})'
      expect(await until("up == 1", async () => ((await query('up{job="deploy-registry"}')) === 1 ? 1 : undefined))).toBe(1)
      const before = await until("the command counter", () => query(commands))
      expect((await ssh(reg, ["components"])).code).toBe(0)
      const after = await until("the counter to move", async () => {
        const v = await query(commands)
        return v !== undefined && v > before ? v : undefined
      })
      expect(after).toBe(before + 1)
    } finally {
      prom.kill("SIGTERM")
      await new Promise((r) => prom.once("exit", r))
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe("docs/metrics.md alert rules", () => {
  it("promtool check rules accepts them", async () => {
    const dir = await tempDir("rules-")
    const file = path.join(dir, "deploy-tools.rules.yml")
    await writeFile(file, alertRules())
    const r = await promtool(["check", "rules", file])
    await rm(dir, { recursive: true, force: true })
    expect(r.stdout).toMatch(/SUCCESS: \d+ rules found/)
    expect(r.code).toBe(0)
  })

  it("promtool test rules: a halted rollout and a reverted one fire their alerts, a running one does not", async () => {
    const dir = await tempDir("rules-test-")
    await writeFile(path.join(dir, "deploy-tools.rules.yml"), alertRules())
    const halted = (labels: string) => `{alertname: DeployRolloutHalted, severity: warning, state: halted${labels}}`
    await writeFile(path.join(dir, "test.yml"), [
      "rule_files: [deploy-tools.rules.yml]",
      "evaluation_interval: 1m",
      "tests:",
      "  - interval: 1m",
      "    input_series:",
      "      - series: 'deploy_registry_rollouts{state=\"halted\",instance=\"r\"}'",
      "        values: '0 0 1 1 1 1'",
      "      - series: 'deploy_registry_rollouts{state=\"running\",instance=\"r\"}'",
      "        values: '1 1 1 1 1 1'",
      "      - series: 'deploy_registry_rollouts_ended_total{outcome=\"reverted\",instance=\"r\"}'",
      "        values: '0 0 0 1 1 1'",
      "    alert_rule_test:",
      "      - eval_time: 2m",
      "        alertname: DeployRolloutHalted",
      "        exp_alerts: []",
      "      - eval_time: 4m",
      "        alertname: DeployRolloutHalted",
      "        exp_alerts:",
      "          - exp_labels: " + halted(", instance: r"),
      "            exp_annotations: {summary: 'ROLLOUT_HALTED'}",
      "      - eval_time: 2m",
      "        alertname: DeployRolloutReverted",
      "        exp_alerts: []",
      "      - eval_time: 5m",
      "        alertname: DeployRolloutReverted",
      "        exp_alerts:",
      "          - exp_labels: {alertname: DeployRolloutReverted, severity: warning, outcome: reverted, instance: r}",
      "            exp_annotations: {summary: 'ROLLOUT_REVERTED'}",
      ""
    ].join("\n")
      .replace("ROLLOUT_HALTED", "1 rollout(s) on r halted on failures; their admitted hosts keep the new state (deployctl status, rollout -name … -status, then -abort)")
      .replace("ROLLOUT_REVERTED", "a rollout on r was reverted on failures within the last hour (history -name …)"))
    const r = await promtool(["test", "rules", path.join(dir, "test.yml")])
    await rm(dir, { recursive: true, force: true })
    expect(r.stdout + r.stderr).toMatch(/SUCCESS/)
    expect(r.code).toBe(0)
  })
})
