// Faults between the registry and the agent: a blob corrupted on the registry's disk is refused by the
// agent (state unchanged) and reported by verify; the registry dying mid-download makes the agent retry
// and deploy once it is back.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { tempDir } from "../support/keys.js"
import { startRegistry } from "../support/registry.js"
import { kill, type RunningAgent, startAgent, writeCheckingScript } from "./lib/agent.js"
import { openSession } from "./lib/client.js"
import { verifyDir, waitFor } from "./lib/proc.js"
import { makeRng } from "./lib/random.js"
import { makeTarGz, manifest, type Tree } from "./lib/tarball.js"

const rng = makeRng()
const cleanups: Array<() => Promise<unknown> | void> = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

const setup = async () => {
  const reg = await startRegistry()
  const work = await tempDir("rel-agent-faults-")
  cleanups.push(async () => {
    await reg.stop("SIGKILL")
    rmSync(reg.dir, { recursive: true, force: true })
    rmSync(work, { recursive: true, force: true })
  })
  const manifests = path.join(work, "manifests")
  mkdirSync(manifests)
  const violations = path.join(work, "violations.txt")
  const deploys = path.join(work, "deploys.txt")
  const script = writeCheckingScript(path.join(work, "bin"), manifests, violations, deploys)
  const agentDir = path.join(work, "agent")
  mkdirSync(agentDir)
  const op = await openSession(reg, reg.operator.privatePath)
  cleanups.push(() => op.close().catch(() => undefined))
  /** Uploads a one-layer tree as code:<version> and records its manifest; returns blob and config hash. */
  const addVersion = async (version: string, tree: Tree) => {
    const bytes = await makeTarGz(tree, path.join(work, `${version}.tar.gz`))
    const blob = await op.upload(bytes)
    const r = await op.exec(`addver -name code -version ${version} -hash ${blob}`)
    expect(r.code, r.stdout.toString()).toBe(0)
    const conf = configHash([blob])
    writeFileSync(path.join(manifests, conf), manifest(tree))
    return { blob, conf }
  }
  const stateHash = () =>
    existsSync(path.join(agentDir, "state.json")) ? (JSON.parse(readFileSync(path.join(agentDir, "state.json"), "utf8")) as { Hash: string }).Hash : undefined
  const violationsSeen = () => (existsSync(violations) ? readFileSync(violations, "utf8") : "")
  const deployed = () => (existsSync(deploys) ? readFileSync(deploys, "utf8").split("\n").filter((l) => l !== "") : [])
  return { reg, work, op, script, agentDir, addVersion, stateHash, violationsSeen, deployed }
}

const smallTree = (tag: string): Tree => new Map([[`app/${tag}.txt`, Buffer.from(`${tag}\n`)], ["app/data.bin", rng.bytes(50_000)]])

describe("a blob corrupted on the registry's disk", () => {
  it("is refused by the agent (hash mismatch logged, state unchanged) and reported by verify", async () => {
    const t = await setup()
    const v1 = await t.addVersion("v1", smallTree("one"))
    expect((await t.op.exec("addconf -name web -layer code:v1")).code).toBe(0)
    const first = startAgent(t.reg, { dir: t.agentDir, name: "web", script: t.script, once: true })
    expect((await first.exited).code, first.log()).toBe(0)
    expect(t.stateHash()).toBe(v1.conf)

    const v2 = await t.addVersion("v2", smallTree("two"))
    const file = path.join(t.reg.dir, "files", v2.blob)
    const bytes = readFileSync(file)
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x40
    writeFileSync(file, bytes)
    expect((await t.op.exec("changeconf -name web -component code -version v2")).code).toBe(0)

    const second = startAgent(t.reg, { dir: t.agentDir, name: "web", script: t.script, once: true })
    const { code } = await second.exited
    expect(code).toBe(1)
    expect(second.log()).toMatch(new RegExp(`${v2.blob}.*(sha256|mismatch|hash)`, "i"))
    expect(t.stateHash()).toBe(v1.conf)
    expect(t.deployed()).toEqual([v1.conf])
    expect(t.violationsSeen()).toBe("")
    const cache = readdirSync(path.join(t.agentDir, "cache"))
    expect(cache).not.toContain(v2.blob)
    expect(cache.filter((n) => n.endsWith(".part"))).toEqual([])
    expect(existsSync(path.join(t.agentDir, "unpacked", `${v2.conf}.ok`))).toBe(false)

    const online = await t.op.exec("verify")
    expect(online.code).toBe(1)
    expect(online.stdout.toString()).toContain(v2.blob)
    const offline = await verifyDir(t.reg.dir)
    expect(offline.code).toBe(1)
    expect(offline.stdout).toContain(v2.blob)
  })
})

describe("the registry going away mid-download", () => {
  it("makes the agent retry and deploy once the registry is back", async () => {
    const t = await setup()
    const v1 = await t.addVersion("v1", new Map([["big/a.bin", rng.bytes(32 * 1024 * 1024)], ["app/x.txt", Buffer.from("x\n")]]))
    expect((await t.op.exec("addconf -name web -layer code:v1")).code).toBe(0)
    await t.op.close()
    let agent: RunningAgent | undefined
    cleanups.push(async () => void (agent && (await kill(agent))))
    agent = startAgent(t.reg, { dir: t.agentDir, name: "web", script: t.script, poll: "1s" })
    expect(await agent.waitForLine(/downloading layer/)).toBe(true)
    await t.reg.stop("SIGKILL")
    const killedAt = Date.now()
    // The cycle fails (connection lost), then retries. A request issued on the dead channel is never
    // answered (G-bugs.md, ssh2 drops it) and only the agent's 60 s no-data timeout ends that cycle.
    const failedFast = await waitFor(() => /cycle failed/.test(agent!.log()), 20_000, 100)
    console.log(`registry gone mid-download: the agent ${failedFast ? `noticed in ${Date.now() - killedAt} ms` : "did not notice within 20 s"}`)
    expect(t.stateHash()).toBeUndefined()
    await t.reg.restart()
    expect(await waitFor(() => t.stateHash() === v1.conf, 90_000, 200), agent.log().slice(-2000)).toBe(true)
    expect(agent.log()).toMatch(/cycle failed/)
    expect(t.deployed()).toEqual([v1.conf])
    expect(t.violationsSeen()).toBe("")
    expect(readdirSync(path.join(t.agentDir, "cache")).filter((n) => n.endsWith(".part"))).toEqual([])
    expect(agent.child.exitCode).toBeNull() // still running: one failed cycle never kills the agent
  }, 180_000)
})

describe("trees left by an agent killed between its state write and -cleanold", () => {
  it("are removed by the next -cleanold cycle even when the configuration did not change", async () => {
    const t = await setup()
    const v1 = await t.addVersion("v1", smallTree("one"))
    expect((await t.op.exec("addconf -name web -layer code:v1")).code).toBe(0)
    const first = startAgent(t.reg, { dir: t.agentDir, name: "web", script: t.script, once: true, extra: ["-cleanold"] })
    expect((await first.exited).code, first.log()).toBe(0)
    // What a SIGKILL leaves: a complete older tree (state already switched, cleanup not yet run) and a
    // partial tree of an interrupted unpack (no .ok marker).
    const unpacked = path.join(t.agentDir, "unpacked")
    const older = "a".repeat(64)
    const partial = "b".repeat(64)
    mkdirSync(path.join(unpacked, older, "app"), { recursive: true })
    writeFileSync(path.join(unpacked, older, "app", "old.txt"), "old\n")
    writeFileSync(path.join(unpacked, `${older}.ok`), `${older}\n`)
    mkdirSync(path.join(unpacked, partial, "app"), { recursive: true })
    writeFileSync(path.join(unpacked, partial, "app", "half.txt"), "half")
    const again = startAgent(t.reg, { dir: t.agentDir, name: "web", script: t.script, once: true, extra: ["-cleanold"] })
    expect((await again.exited).code, again.log()).toBe(0)
    expect(t.stateHash()).toBe(v1.conf)
    expect(readdirSync(unpacked).sort()).toEqual([v1.conf, `${v1.conf}.ok`].sort())
  })
})
