// The operators' `events` stream (EventsSession.ts, OperatorEvents.ts) and the 24 h timeline
// (`status -name N -timeline`, Timeline.ts), against the BUILT registry (`npm run build` first) with raw
// ssh2 clients playing an operator and an agent.
import * as fs from "node:fs/promises"
import type { Client } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addVersion, exec, run, currentHash } from "../agent/operator.js"
import { tarGz } from "../agent/fixtures.js"
import { jsonLinesExec } from "../support/jsonLines.js"
import { clientExec, connectClient, startRegistry, type TestRegistry } from "../support/registry.js"

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
  if (reg) await fs.rm(reg.dir, { recursive: true, force: true })
})

const client = async (user: string, key: string) => {
  const c = await connectClient(reg.port, user, { privateKeyPath: key })
  c.on("error", () => undefined)
  clients.push(c)
  return c
}

const report = (name: string, host: string, hash: string, outcome: string, extra: Record<string, unknown> = {}) => ({
  type: "report",
  report: { host, agentVersion: "0.1.0", configuration: name, hash, outcome, ...extra }
})

describe("events", () => {
  it("streams committed changes, deletions, agent sessions and reports with the host's state, and pings", async () => {
    const ev = await jsonLinesExec(await client("operator", reg.operator.privatePath), "events")
    await run(reg, "addconf -name e1 -layer code:v1")
    const h1 = await currentHash(reg, "e1")
    expect(await ev.next((l) => l.Event === "state" && l.Name === "e1")).toEqual({ Event: "state", Name: "e1", Hash: h1, Time: expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/) })

    // An agent opens its session (behind: it has not deployed), reports deployed (current), goes away (offline).
    const agent = await jsonLinesExec(await client("deploy-agent", reg.agent.privatePath), "watch -name e1 -host web1 -version 0.1.0")
    const ping = setInterval(() => agent.send({ type: "ping" }), 100)
    expect(await ev.next((l) => l.Event === "host" && l.Host === "web1")).toEqual({ Event: "host", Name: "e1", Host: "web1", State: "behind", Hash: "" })
    agent.send(report("e1", "web1", h1, "deployed", { target: h1 }))
    expect(await ev.next((l) => l.Event === "host" && l.State === "current")).toEqual({ Event: "host", Name: "e1", Host: "web1", State: "current", Hash: h1 })

    await run(reg, "changeconf -name e1 -component code -version v2")
    const h2 = await currentHash(reg, "e1")
    await ev.next((l) => l.Event === "state" && l.Hash === h2)
    agent.send(report("e1", "web1", h1, "failed", { target: h2, reason: "exit status 1" }))
    expect(await ev.next((l) => l.Event === "host" && l.State === "failed")).toMatchObject({ Host: "web1", Hash: h1 })

    clearInterval(ping)
    agent.channel.end()
    expect(await ev.next((l) => l.Event === "host" && l.State === "offline")).toMatchObject({ Host: "web1" })

    await run(reg, "delconf -name e1 -force")
    expect(await ev.next((l) => l.Event === "deleted")).toEqual({ Event: "deleted", Name: "e1" })
    await ev.next((l) => l.Event === "ping")
    ev.channel.end()
    expect(await ev.closed).toBe(0)
  }, 60_000)

  it("is an operator command: an agent key cannot open it, and the interpreter refuses it as a line", async () => {
    const agent = await client("deploy-agent", reg.agent.privatePath)
    await expect(clientExec(agent, "events")).rejects.toThrow()
    // In the interactive shell (or with -h-style extras) it is not a streaming command.
    expect(await exec(reg, "events -x")).toMatchObject({ code: 1 })
    const help = await run(reg, "help")
    expect(help).toMatch(/^events +stream changes/m)
  }, 30_000)
})

describe("timeline", () => {
  it("keeps each host's outcomes of the last 24 h and serves them as status -timeline", async () => {
    await run(reg, "addconf -name t1 -layer code:v1")
    const h1 = await currentHash(reg, "t1")
    const ev = await jsonLinesExec(await client("operator", reg.operator.privatePath), "events")
    const a = await jsonLinesExec(await client("deploy-agent", reg.agent.privatePath), "watch -name t1 -host a -version 0.1.0")
    const b = await jsonLinesExec(await client("deploy-agent", reg.agent.privatePath), "watch -name t1 -host '<img src=x>' -version 0.1.0")
    a.send(report("t1", "a", "", "deploying", { target: h1 }))
    a.send(report("t1", "a", h1, "deployed", { target: h1 }))
    b.send(report("t1", "<img src=x>", "", "unpack-refused", { target: h1 }))
    await ev.next((l) => l.Event === "host" && l.Host === "<img src=x>" && l.State === "failed")
    await ev.next((l) => l.Event === "host" && l.Host === "a" && l.State === "current")
    const timeline = JSON.parse(await run(reg, "status -name t1 -timeline -json")) as Array<Record<string, unknown>>
    const t = expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z$/)
    expect(timeline).toEqual([
      { Host: "<img src=x>", Time: t, Hash: h1, Outcome: "failed" },
      { Host: "a", Time: t, Hash: h1, Outcome: "deploying" },
      { Host: "a", Time: t, Hash: h1, Outcome: "deployed" }
    ])
    expect(await run(reg, "status -name t1 -timeline")).toMatch(/^HOST +TIME +OUTCOME +HASH\n"<img src=x>" +\S+ +failed/)
    expect(await exec(reg, "status -timeline")).toMatchObject({ code: 1, output: "-timeline needs -name\n" })
    expect(await exec(reg, "status -name nope -timeline -json")).toMatchObject({ code: 1, output: 'configuration "nope" not found\n' })
    for (const s of [a, b, ev]) s.channel.end()
  }, 60_000)
})
