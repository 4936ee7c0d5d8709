// The BUILT agent with several registry addresses (-addr a,b; `npm run build` first): two registries
// sharing one host key (test/support/replicas.ts). The agent starts at a random one, moves past one
// that is down, and its watch session moves to the other when the one it holds dies (kill -9).
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { spawnAgent, waitLine } from "../support/agent.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { addrList, deadAddr, startSibling } from "../support/replicas.js"
import { testResources } from "../support/resources.js"
import { tarGz } from "./fixtures.js"
import { addVersion, run, currentHash } from "./operator.js"
import { tempDir } from "./support.js"

const { dirs, registries, agents } = testResources()

/** Both registries hold code v1..v3 and configuration `name` at v1 (each its own SQLite data). */
const prepare = async (reg: TestRegistry, name: string) => {
  for (const v of ["v1", "v2", "v3"]) await addVersion(reg, "code", v, tarGz([{ path: "a", type: "file", content: v }]))
  await run(reg, `addconf -name ${name} -layer code:v1`)
}

const registry = async () => {
  const a = await startRegistry({ extraArgs: ["-watch-ping", "500ms"] })
  registries.push(a)
  dirs.push(a.dir)
  return a
}

const pair = async (name: string) => {
  const a = await registry()
  const b = await startSibling(a, ["-watch-ping", "500ms"])
  registries.push(b)
  dirs.push(b.dir)
  expect(b.fingerprint).toBe(a.fingerprint)
  await prepare(a, name)
  await prepare(b, name)
  return [a, b] as const
}

const agent = async (addr: string, reg: TestRegistry, name: string, host: string) => {
  const dir = await tempDir("agent-addr-")
  dirs.push(dir)
  const a = spawnAgent(
    ["-addr", addr, "-fp", reg.fingerprint, "-key", reg.agent.privatePath, "-name", name, "-dir", path.join(dir, "work"),
      "-script", "", "-host", host, "-poll", "1h", "-ping", "500ms", "-reconnect", "200ms"],
    dir
  )
  agents.push(a)
  return a
}

/** Whether `host` holds a watch session on `reg` now. */
const connectedTo = async (reg: TestRegistry, name: string, host: string) => {
  const s = JSON.parse(await run(reg, `status -name ${name} -json`)) as { Hosts: Array<{ Host: string; Connected?: boolean }> }
  return s.Hosts.some((h) => h.Host === host && h.Connected === true)
}

describe("deploy-agent -addr a,b", () => {
  it("its watch session moves to the other registry when the one it holds is killed; a change there deploys", async () => {
    const [a, b] = await pair("p1")
    const ag = await agent(addrList(a, b), a, "p1", "web1")
    await waitLine(ag, /watching configuration p1/, 0, 30_000)
    const held = (await connectedTo(a, "p1", "web1")) ? a : b
    const other = held === a ? b : a
    expect(await connectedTo(other, "p1", "web1")).toBe(false)
    const from = ag.log().length
    await held.stop("SIGKILL")
    await waitLine(ag, /watch session lost/, from, 30_000)
    await waitLine(ag, /watching configuration p1/, from, 30_000)
    expect(await connectedTo(other, "p1", "web1")).toBe(true)
    await run(other, "changeconf -name p1 -component code -version v3")
    await waitLine(ag, new RegExp(`deployed configuration p1 ${await currentHash(other, "p1")}`), from, 30_000)
  }, 90_000)

  it("moves past an address that is down, in either position, with one -fp", async () => {
    // One registry: the other address is down for good.
    const a = await registry()
    await prepare(a, "p2")
    for (const addr of [`${deadAddr},${a.addr}`, `${a.addr},${deadAddr}`]) {
      const ag = await agent(addr, a, "p2", "web2")
      await waitLine(ag, /deployed configuration p2 /, 0, 30_000)
      await waitLine(ag, /watching configuration p2/, 0, 30_000)
      ag.child.kill("SIGKILL")
      await ag.exited
    }
  }, 90_000)

  it("a malformed list is refused at start", async () => {
    const dir = await tempDir("agent-addr-")
    dirs.push(dir)
    const ag = spawnAgent(["-addr", "127.0.0.1:2022,", "-fp", `SHA256:${"A".repeat(43)}`, "-name", "p", "-dir", dir, "-script", ""], dir)
    agents.push(ag)
    expect((await ag.exited).code).toBe(2)
    expect(ag.log()).toContain('-addr: malformed address "127.0.0.1:2022,", expected host:port or host:port,host:port,…')
  }, 30_000)
})
