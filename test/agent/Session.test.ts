// Agent sessions end to end: the BUILT agent (dist/agent/main.js) against the BUILT registry, with
// deployctl for `status -wait` (run `npm run build` first). Agents poll once an hour here, so every
// deploy after the first can only come from a pushed event.
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { ctlMain } from "../ctl/harness.js"
import { spawnAgent, waitLine } from "../support/agent.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { tarGz } from "./fixtures.js"
import { addVersion, run, currentHash } from "./operator.js"
import { tempDir } from "./support.js"
import { testResources } from "../support/resources.js"

const { dirs, registries, agents } = testResources()

const registry = async (extra: Array<string> = []) => {
  const r = await startRegistry({ extraArgs: ["-watch-ping", "500ms", ...extra] })
  registries.push(r)
  dirs.push(r.dir)
  await addVersion(r, "code", "v1", tarGz([{ path: "a", type: "file", content: "1" }]))
  await addVersion(r, "code", "v2", tarGz([{ path: "a", type: "file", content: "2" }]))
  await addVersion(r, "code", "v3", tarGz([{ path: "a", type: "file", content: "3" }]))
  return r
}

/** The default registry, shared by the tests that need nothing else (each uses configurations of its own). */
let shared: Promise<TestRegistry> | undefined
const sharedRegistry = () => (shared ??= registry())

let counter = 0
/** An agent on `name` polling hourly, 300 ms keepalive, quick reconnects; `script` is the deploy script's body. */
const agent = async (reg: TestRegistry, name: string, host: string, script = "exit 0", extra: Array<string> = []) => {
  const dir = await tempDir("agent-session-")
  dirs.push(dir)
  await fs.writeFile(path.join(dir, "deploy.sh"), `#!/bin/sh\n${script}\n`, { mode: 0o755 })
  const a = spawnAgent(
    ["-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.agent.privatePath, "-name", name, "-dir", path.join(dir, "work"),
      "-script", path.join(dir, "deploy.sh"), "-host", host, "-poll", "1h", "-ping", "500ms", "-reconnect", "200ms", ...extra],
    dir
  )
  agents.push(a)
  return a
}

const deployctl = (reg: TestRegistry, args: Array<string>) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, ...args], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

describe("watch", () => {
  it("a change reaches an agent that polls hourly at once; status and status -wait see it current", async () => {
    const reg = await sharedRegistry()
    const name = `w${++counter}`
    await run(reg, `addconf -name ${name} -layer code:v1`)
    const a = await agent(reg, name, "web1")
    await waitLine(a, /deployed configuration \S+ [0-9a-f]{64}/)
    await waitLine(a, /watching configuration/)
    const from = a.log().length
    await run(reg, `changeconf -name ${name} -component code -version v2`)
    const h2 = await currentHash(reg, name)
    await waitLine(a, new RegExp(`deployed configuration ${name} ${h2}`), from)

    const ok = await deployctl(reg, ["status", "-name", name, "-wait"])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/1 host\(s\), 1 current/)
    expect(ok.stdout).toMatch(/web1 +current +[0-9a-f]{12} .* connected/)
    const s = JSON.parse(await run(reg, `status -name ${name} -json`)) as { Hosts: Array<Record<string, unknown>> }
    // One host: the agent's SFTP reads ride on its watch connection, so it never shows as a poll-only host.
    expect(s.Hosts).toEqual([expect.objectContaining({ Host: "web1", State: "current", Hash: h2, Outcome: "deployed", AgentVersion: "0.1.0" })])
  }, 60_000)

  it("a failed deploy is reported with the script's last lines, and status -wait exits 1", async () => {
    const reg = await sharedRegistry()
    const name = `w${++counter}`
    await run(reg, `addconf -name ${name} -layer code:v1`)
    const a = await agent(reg, name, "web2", 'if [ -n "$OLDID" ]; then echo "migration 7 failed" >&2; exit 3; fi')
    await waitLine(a, /deployed configuration/)
    await waitLine(a, /watching configuration/)
    await run(reg, `changeconf -name ${name} -component code -version v2`)
    await waitLine(a, /cycle failed: deploy script failed/)
    const r = await deployctl(reg, ["status", "-name", name, "-wait"])
    expect(r.code).toBe(1)
    expect(r.stdout).toMatch(/web2 +failed .*exit status 3: migration 7 failed\n/)
  }, 60_000)
})

// Its last test freezes and restarts the shared registry: keep that one last in the file.
describe("fallback and recovery", () => {
  it("against a registry that refuses watch, the agent polls as before", async () => {
    const reg = await registry(["-watch=false"])
    const name = `w${++counter}`
    await run(reg, `addconf -name ${name} -layer code:v1`)
    const a = await agent(reg, name, "old1", "exit 0", ["-poll", "500ms"])
    await waitLine(a, /the registry refused the watch session .*; polling every/)
    await waitLine(a, /deployed configuration/)
    const from = a.log().length
    await run(reg, `changeconf -name ${name} -component code -version v2`)
    await waitLine(a, new RegExp(`deployed configuration ${name} ${await currentHash(reg, name)}`), from)
    // What the registry saw of it: a host that polls, by its key.
    const s = JSON.parse(await run(reg, `status -name ${name} -json`)) as { Hosts: Array<Record<string, unknown>> }
    expect(s.Hosts).toEqual([expect.objectContaining({ Kind: "poll", Host: reg.agent.fingerprint })])
  }, 60_000)

  it("detects a registry that stopped answering, and reconnects after a restart", async () => {
    const reg = await sharedRegistry()
    const name = `w${++counter}`
    await run(reg, `addconf -name ${name} -layer code:v1`)
    const a = await agent(reg, name, "web3")
    await waitLine(a, /deployed configuration/)
    await waitLine(a, /watching configuration/)

    // Frozen: no pings come; three intervals later the agent drops the connection.
    let from = a.log().length
    void reg.stop("SIGSTOP")
    try {
      await waitLine(a, /watch session lost: no line from the registry/, from)
    } finally {
      void reg.stop("SIGCONT")
    }
    await waitLine(a, /watching configuration/, from)

    from = a.log().length
    await reg.restart()
    await waitLine(a, /watch session lost/, from)
    await waitLine(a, /watching configuration/, from)
    const after = a.log().length
    await run(reg, `changeconf -name ${name} -component code -version v3`)
    await waitLine(a, new RegExp(`deployed configuration ${name} ${await currentHash(reg, name)}`), after)
    // The restarted registry knows the host again from the report resent on reconnect (the report of the
    // deploy follows its log line, so poll for it).
    const hosts = async () => (JSON.parse(await run(reg, `status -name ${name} -json`)) as { Hosts: Array<Record<string, unknown>> }).Hosts
    await expect.poll(hosts, { timeout: 20_000 }).toEqual([expect.objectContaining({ Host: "web3", State: "current", Connected: true })])
  }, 90_000)
})
