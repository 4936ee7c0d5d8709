// Three registry replicas on one real PostgreSQL database (the BUILT programs: `npm run build` first),
// one host key (-hostkey), agents given all three addresses and spread over them, polling hourly so a
// deploy can only come from a pushed event. Rounds of changes committed on rotating replicas reach
// every agent; a replica killed with kill -9 while agents watch, and the database killed and restarted,
// lose no acknowledged change: every agent converges, the history holds every acknowledged state and
// `verify -db` is clean. Short in CI; REPLICAS_LONG=1 runs more rounds and agents. The figures (rounds,
// acknowledged changes, losses) are printed in the test log.
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { writeFile } from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { tarGz } from "../agent/fixtures.js"
import { addVersion, exec, run } from "../agent/operator.js"
import { ctlMain } from "../ctl/harness.js"
import { type RunningAgent, spawnAgent } from "../support/agent.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"
import { registryMain, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"
import { addrList, startSibling } from "../support/replicas.js"
import { testResources } from "../support/resources.js"

const LONG = process.env.REPLICAS_LONG === "1"
const ROUNDS = LONG ? 30 : 4
const AGENTS = LONG ? 12 : 5

const node = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    c.stdout.on("data", (b: Buffer) => (out += b.toString()))
    c.stderr.on("data", (b: Buffer) => (out += b.toString()))
    c.once("exit", (code) => resolve({ code, out }))
  })

const waitLine = async (a: RunningAgent, re: RegExp, from: number, what: string) => {
  const hit = await Promise.race([a.waitForLine(re, from), new Promise<false>((r) => setTimeout(() => r(false), 60_000))])
  if (!hit) throw new Error(`${what}: agent log never matched ${re}:\n${a.log().slice(-3000)}`)
}

/** Watch sessions a replica has open now, from its log. */
const watching = (reg: TestRegistry) => {
  const log = reg.log()
  return (log.match(/watches configuration/g) ?? []).length - (log.match(/stopped watching|closing the watch of/g) ?? []).length
}

describe.skipIf(postgresMissing() !== undefined)("three replicas on PostgreSQL", () => {
  const pg = usePostgres()
  const res = testResources()

  it(`${ROUNDS} rounds of changes on rotating replicas reach ${AGENTS} agents spread over them; kill -9 of a replica and a database restart lose nothing`, async () => {
    const url = await pg().createDatabase()
    const args = ["-db", url, "-watch-ping", "500ms"]
    const first = await startRegistry({ extraArgs: args })
    const replicas = [first, await startSibling(first, args), await startSibling(first, args)]
    for (const r of replicas) {
      res.registries.push(r)
      res.dirs.push(r.dir)
    }
    for (let v = 0; v <= ROUNDS + 2; v++) await addVersion(first, "code", `v${v}`, tarGz([{ path: "a", type: "file", content: `v${v}` }]))
    await run(first, "addconf -name p1 -layer code:v0")

    const agents: Array<RunningAgent> = []
    for (let i = 0; i < AGENTS; i++) {
      const dir = await tempDir("replica-agent-")
      res.dirs.push(dir)
      const a = spawnAgent(["-addr", addrList(...replicas), "-fp", first.fingerprint, "-key", first.agent.privatePath, "-name", "p1",
        "-dir", path.join(dir, "work"), "-script", "", "-host", `h${i}`, "-poll", "1h", "-ping", "500ms", "-reconnect", "300ms"], dir)
      res.agents.push(a)
      agents.push(a)
    }
    for (const a of agents) await waitLine(a, /watching configuration p1/, 0, "first watch")

    const hashOf = async (reg: TestRegistry) => /Hash:\t([0-9a-f]{64})/.exec(await run(reg, "showconf -name p1 -v"))![1]!
    const acknowledged: Array<string> = []
    let alive = [...replicas]
    /** One change on `reg`, retried while the database is coming back; every agent must deploy it. */
    const round = async (n: number, reg: TestRegistry, what: string) => {
      const marks = agents.map((a) => a.log().length)
      for (let tries = 0; ; tries++) {
        const r = await exec(reg, `changeconf -name p1 -component code -version v${n}`)
        if (r.code === 0) break
        if (tries > 40) throw new Error(`changeconf v${n} on a replica kept failing: ${r.output}`)
        await new Promise((s) => setTimeout(s, 500))
      }
      const hash = await hashOf(reg)
      acknowledged.push(hash)
      await Promise.all(agents.map((a, i) => waitLine(a, new RegExp(`deployed configuration p1 ${hash}`), marks[i]!, `${what}, round ${n}`)))
    }

    let n = 0
    for (; n < Math.ceil(ROUNDS / 2); ) {
      n++
      await round(n, alive[n % alive.length]!, "changes on rotating replicas")
    }
    // kill -9 of the replica holding the most watch sessions, in the middle of an upload to it: its agents
    // move to the others; the upload is either acknowledged (and kept) or leaves nothing behind (verify).
    const victim = [...alive].sort((x, y) => watching(y) - watching(x))[0]!
    expect(watching(victim)).toBeGreaterThan(0)
    const work = await tempDir("replica-upload-")
    res.dirs.push(work)
    await writeFile(path.join(work, "big.tar.gz"), tarGz([{ path: "big", type: "file", content: randomBytes(24 << 20).toString("base64") }]))
    const upload = node([ctlMain, "-addr", victim.addr, "-fp", first.fingerprint, "-key", first.operator.privatePath,
      "addver", "-name", "big", "-version", "v1", "-file", path.join(work, "big.tar.gz")])
    await new Promise((r) => setTimeout(r, 400))
    await victim.stop("SIGKILL")
    const uploaded = (await upload).code === 0
    alive = alive.filter((r) => r !== victim)
    n++
    await round(n, alive[0]!, "after kill -9 of a replica")
    // The database killed and restarted under the agents: replicas renew their LISTEN by themselves.
    await pg().kill("SIGKILL")
    await pg().restart()
    n++
    await round(n, alive[1]!, "after a database restart")
    // The killed replica comes back and serves again.
    await victim.restart()
    alive = [...replicas]
    for (; n < ROUNDS + 2; ) {
      n++
      await round(n, alive[n % alive.length]!, "after recovery")
    }

    // Nothing acknowledged is lost: every state is in the history, the last one is current, verify is clean.
    const history = JSON.parse(await run(replicas[0]!, "history -name p1 -json")) as Array<{ Hash: string }>
    const lost = acknowledged.filter((h) => !history.some((s) => s.Hash === h))
    const bigVersions = await exec(replicas[0]!, "showcomp -name big")
    if (uploaded) lost.push(...(bigVersions.code === 0 ? [] : ["the acknowledged upload big v1"]))
    expect(await hashOf(replicas[2]!)).toBe(acknowledged.at(-1))
    const verified = await node([registryMain, "verify", "-db", url])
    console.log(`replicas: ${n} rounds, ${acknowledged.length + (uploaded ? 1 : 0)} acknowledged changes (upload killed mid-way: ${uploaded ? "acknowledged first" : "not acknowledged"}), ${lost.length} lost, ${AGENTS} agents converged each round; verify: ${verified.out.trim()}`)
    expect(lost).toEqual([])
    expect(verified.code, verified.out).toBe(0)
    for (const r of replicas) await r.stop("SIGKILL")
  }, LONG ? 1_200_000 : 240_000)
})
