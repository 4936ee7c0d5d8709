// The registry's side of agent sessions (WatchSession.ts, HostStatus.ts, `status`/`forget`), against
// the BUILT registry (`npm run build` first) with a raw ssh2 client playing the agent.
import * as fs from "node:fs/promises"
import type { Client } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addVersion, exec, run, currentHash } from "../agent/operator.js"
import { tarGz } from "../agent/fixtures.js"
import { type JsonLines, jsonLinesExec } from "../support/jsonLines.js"
import { clientExec, clientSftp, connectClient, startRegistry, type TestRegistry } from "../support/registry.js"

let reg: TestRegistry
const clients: Array<Client> = []

beforeAll(async () => {
  reg = await startRegistry({ extraArgs: ["-watch-ping", "500ms"] })
  await addVersion(reg, "code", "v1", tarGz([{ path: "a", type: "file", content: "1" }]))
  await addVersion(reg, "code", "v2", tarGz([{ path: "a", type: "file", content: "2" }]))
}, 60_000)
afterAll(async () => {
  for (const c of clients) c.end()
  await reg?.stop()
  await fs.rm(reg.dir, { recursive: true, force: true })
})

const agentClient = async () => {
  const c = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
  c.on("error", () => undefined)
  clients.push(c)
  return c
}

const statusJson = async (name: string) =>
  JSON.parse(await run(reg, `status -name ${name} -json`)) as { Hash: string; Hosts: Array<Record<string, unknown>> }

/** Keeps the session alive as an agent does. */
const pinging = (w: JsonLines) => {
  const t = setInterval(() => w.send({ type: "ping" }), 100)
  void w.closed.then(() => clearInterval(t))
  return () => clearInterval(t)
}

const report = (name: string, host: string, hash: string, outcome = "deployed", extra: Record<string, unknown> = {}) => ({
  type: "report",
  report: { host, agentVersion: "0.1.0", configuration: name, hash, outcome, ...extra }
})

describe("watch", () => {
  it("streams the current state at once, then every committed change of its configuration, and the deletion", async () => {
    await run(reg, "addconf -name w1 -layer code:v1")
    await run(reg, "addconf -name other -layer code:v1")
    const h1 = await currentHash(reg, "w1")
    const w = await jsonLinesExec(await agentClient(), "watch -name w1 -host web1 -version 0.1.0")
    const stop = pinging(w)
    expect(await w.next((l) => l.type === "state")).toMatchObject({ type: "state", name: "w1", hash: h1 })
    await run(reg, "changeconf -name other -component code -version v2")
    await run(reg, "changeconf -name w1 -component code -version v2")
    const h2 = await currentHash(reg, "w1")
    expect(await w.next((l) => l.type === "state" && l.hash === h2)).toMatchObject({ name: "w1" })
    await run(reg, "rollback -name w1")
    await w.next((l) => l.type === "state" && l.hash === h1)
    await run(reg, "bumpconf -name w1 -component code")
    await w.next((l) => l.type === "state" && l.hash === h2)
    await run(reg, "replaceconf -name w1 -layer code:v1")
    await w.next((l) => l.type === "state" && l.hash === h1 && w.lines.filter((x) => x.type === "state").length === 5)
    await run(reg, "delconf -name w1 -force")
    await w.next((l) => l.type === "deleted")
    // Only w1's events: five states (the first, four changes) and the deletion.
    expect(w.lines.filter((l) => l.type !== "ping").map((l) => l.type)).toEqual(["state", "state", "state", "state", "state", "deleted"])
    stop()
  }, 60_000)

  it("is the only command an agent key may run, with a valid host name, once per connection", async () => {
    await run(reg, "addconf -name w2 -layer code:v1")
    const c = await agentClient()
    await expect(clientExec(c, "showconf -name w2")).rejects.toThrow()
    const bad = await clientExec(c, "watch -name w2 -host 'a\x01b' -version 1")
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/host cannot contain control characters/)
    const w = await jsonLinesExec(c, "watch -name w2 -host web1 -version 1")
    await w.next((l) => l.type === "state")
    const second = await clientExec(c, "watch -name w2 -host web2 -version 1")
    expect(second).toMatchObject({ code: 1, stdout: "one watch per connection\n" })
    w.channel.end()
  }, 30_000)

  it("closes the session of an agent that stops answering", async () => {
    await run(reg, "addconf -name w3 -layer code:v1")
    const w = await jsonLinesExec(await agentClient(), "watch -name w3 -host silent -version 1")
    await w.next((l) => l.type === "state")
    // Never a line from this agent: three ping intervals later the registry ends the channel.
    await w.closed
    expect(reg.log()).toMatch(/closing the watch of agent "silent" .*no line from it/)
  }, 30_000)
})

describe("reports and status", () => {
  it("stores reports, refuses invalid ones, and tells current, failed, behind and offline hosts apart", async () => {
    await run(reg, "addconf -name s1 -layer code:v1")
    const h1 = await currentHash(reg, "s1")
    const a = await jsonLinesExec(await agentClient(), "watch -name s1 -host web1 -version 0.1.0")
    const b = await jsonLinesExec(await agentClient(), "watch -name s1 -host web2 -version 0.1.0")
    const stops = [pinging(a), pinging(b)]
    await a.next((l) => l.type === "state")
    a.send(report("s1", "web1", h1))
    b.send(report("s1", "web2", "", "failed", { target: h1, reason: "deploy script failed: exit status 3", lines: ["boom"] }))
    // Invalid: another host's name, an unknown outcome, a malformed hash, a huge line list.
    a.send(report("s1", "web9", h1))
    a.send(report("s1", "web1", h1, "exploded"))
    a.send(report("s1", "web1", "zz"))
    a.send(report("s1", "web1", h1, "failed", { lines: Array.from({ length: 500 }, () => "x") }))
    await a.next((l) => l.type === "refused" && /name the host/.test(String(l.message)))
    await a.next((l) => l.type === "refused" && /invalid line/.test(String(l.message)))
    // Four refusals, each its own line: wait for all of them (the first "invalid line" may come before the rest).
    const refusedCount = () => a.lines.filter((l) => l.type === "refused").length
    await a.next(() => refusedCount() >= 4)
    expect(a.lines.filter((l) => l.type === "refused")).toHaveLength(4)

    let s = await statusJson("s1")
    expect(s.Hash).toBe(h1)
    const byHost = (h: string) => s.Hosts.find((x) => x.Host === h)
    expect(byHost("web1")).toMatchObject({ State: "current", Hash: h1, Connected: true, Kind: "agent" })
    expect(byHost("web2")).toMatchObject({ State: "failed", Reason: "deploy script failed: exit status 3", Lines: ["boom"] })
    expect(byHost("web9")).toBeUndefined()
    const text = await run(reg, "status -name s1")
    expect(text).toMatch(/^configuration s1 at [0-9a-f]{64}: 2 host\(s\), 1 current, 0 behind, 0 deploying, 1 failed, 0 offline\n/)
    expect(text).toMatch(/web2 +failed .*deploy script failed: exit status 3: boom/)

    // A change: web1 is behind until it reports again; web2 is no longer failed at the current hash.
    await run(reg, "changeconf -name s1 -component code -version v2")
    s = await statusJson("s1")
    expect(byHost("web1")!.State).toBe("behind")
    expect(byHost("web2")!.State).toBe("behind")

    // Session over: offline.
    stops.forEach((f) => f())
    b.channel.end()
    await b.closed
    await expect.poll(async () => ((await statusJson("s1")).Hosts.find((x) => x.Host === "web2") as { State?: string }).State, { timeout: 10_000 }).toBe("offline")

    const all = await run(reg, "status")
    expect(all).toMatch(/\ns1 +[0-9a-f]{12} +2 +0 +1 +0 +0 +1\n/)
    expect(JSON.parse(await run(reg, "status -json"))).toContainEqual(expect.objectContaining({ Name: "s1", Hosts: 2, Offline: 1 }))

    expect(await run(reg, "forget -name s1 -host web2")).toBe("")
    expect((await statusJson("s1")).Hosts.map((x) => x.Host)).toEqual(["web1"])
    expect(await exec(reg, "forget -name s1 -host web2")).toMatchObject({ code: 1, output: expect.stringMatching(/not found/) })
    a.channel.end()
  }, 60_000)

  it("shows a host that only polls by its key, with the hash it was served", async () => {
    await run(reg, "addconf -name p1 -layer code:v1")
    const h1 = await currentHash(reg, "p1")
    const sftp = await clientSftp(await agentClient())
    await new Promise<void>((res, rej) => sftp.readFile("/configs/p1.json", (e) => (e ? rej(e) : res())))
    const s = await statusJson("p1")
    expect(s.Hosts).toEqual([expect.objectContaining({ Host: reg.agent.fingerprint, Kind: "poll", State: "current", Hash: h1, Address: "127.0.0.1" })])
    await run(reg, "changeconf -name p1 -component code -version v2")
    expect((await statusJson("p1")).Hosts[0]).toMatchObject({ State: "behind" })
    expect(await run(reg, "status -name p1")).toMatch(/SHA256:\S+ \(polls from 127\.0\.0\.1\) +behind/)
  }, 30_000)
})
