// Crash consistency of the agent: the configuration changes, `deploy-agent -once` starts working on it and
// is SIGKILLed at a random moment of its download, unpack or script; the next agent must converge to the
// current configuration, and the deploy script (which checks every file of $NEWROOT against the expected
// tree) must never see a wrong tree.
// Knobs: RELIABILITY_AGENT_ROUNDS (default 50), RELIABILITY_BUDGET_S (default 120 under `npm run test:reliability`, 8 in CI and when unset; 0 = no limit),
// RELIABILITY_SEED.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { tempDir } from "../support/keys.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { kill, startAgent, writeCheckingScript } from "./lib/agent.js"
import { openSession, type Session } from "./lib/client.js"
import { envInt, loopBudgetMs } from "./lib/proc.js"
import { makeRng } from "./lib/random.js"
import { makeTarGz, manifest, merge, type Tree } from "./lib/tarball.js"

const ROUNDS = envInt("RELIABILITY_AGENT_ROUNDS", 50)
const BUDGET_MS = loopBudgetMs()
const MIN_ROUNDS = Math.min(ROUNDS, 3)
const rng = makeRng()

let reg: TestRegistry
let work: string
let op: Session

interface LayerVersion {
  readonly component: string
  readonly version: string
  readonly tree: Tree
  readonly hash: string
}

const layers: Array<LayerVersion> = []

/** Many small incompressible files (kills land mid-unpack), some paths shared between components. */
const makeTree = (prefix: string, files: number, shared: number): Map<string, Buffer> => {
  const t = new Map<string, Buffer>()
  for (let i = 0; i < files; i++) t.set(`${prefix}/d${i % 17}/f${i}.bin`, rng.bytes(rng.int(500, 12_000)))
  for (let i = 0; i < shared; i++) t.set(`shared/s${i}.txt`, Buffer.from(`${prefix} ${i} ${rng.int(0, 1e9)}\n`))
  t.set(`big/${prefix}.bin`, rng.bytes(rng.int(1, 2) * 1024 * 1024))
  return t
}

beforeAll(async () => {
  reg = await startRegistry({ extraArgs: ["-maxver", "1000000"] })
  work = await tempDir("rel-agent-")
  op = await openSession(reg, reg.operator.privatePath)
  for (const [component, versions, files] of [["base", 2, 600], ["code", 3, 250]] as const) {
    for (let v = 1; v <= versions; v++) {
      const tree = makeTree(component === "base" ? "base" : `code`, files, 40)
      const file = path.join(work, `${component}-v${v}.tar.gz`)
      const bytes = await makeTarGz(tree, file)
      const hash = await op.upload(bytes)
      expect((await op.exec(`addver -name ${component} -version v${v} -hash ${hash}`)).code).toBe(0)
      layers.push({ component, version: `v${v}`, tree, hash })
    }
  }
}, 120_000)

afterAll(async () => {
  await op?.close().catch(() => undefined)
  await reg?.stop("SIGKILL")
  if (reg) rmSync(reg.dir, { recursive: true, force: true })
  if (work) rmSync(work, { recursive: true, force: true })
})

type Phase = "startup" | "download" | "unpack" | "script" | "after deploy" | "finished"

/** Where the agent was, judged from its -v log. */
const phaseOf = (log: string, exited: boolean): Phase => {
  if (exited) return "finished"
  if (/deployed configuration/.test(log)) return "after deploy"
  if (/running deploy script/.test(log)) return "script"
  const downloading = (log.match(/downloading layer/g) ?? []).length
  const downloaded = (log.match(/downloaded layer/g) ?? []).length
  if (/unpacked \d+ layer|reusing unpacked/.test(log)) return "script"
  if (/changed:/.test(log)) return downloading > downloaded ? "download" : "unpack"
  return "startup"
}

it("converges after SIGKILLs during download, unpack and script, and never deploys a wrong tree", async () => {
  const agentDir = path.join(work, "agent")
  const manifests = path.join(work, "manifests")
  mkdirSync(agentDir, { recursive: true })
  mkdirSync(manifests, { recursive: true })
  const violations = path.join(work, "violations.txt")
  const deploys = path.join(work, "deploys.txt")
  const script = writeCheckingScript(path.join(work, "bin"), manifests, violations, deploys)

  const base = layers.filter((l) => l.component === "base")
  const code = layers.filter((l) => l.component === "code")
  // Manifests for every combination the configuration can take.
  const combos = new Map<string, string>()
  for (const b of base) {
    for (const c of code) {
      const h = configHash([b.hash, c.hash])
      writeFileSync(path.join(manifests, h), manifest(merge([b.tree, c.tree])))
      combos.set(`${b.version} ${c.version}`, h)
    }
  }
  expect((await op.exec("addconf -name web -layer base:v1 -layer code:v1")).code).toBe(0)
  let current = { base: "v1", code: "v1" }

  const kills: Record<Phase, number> = { startup: 0, download: 0, unpack: 0, script: 0, "after deploy": 0, finished: 0 }
  let workWindowMs = 1500
  let rounds = 0
  let convergences = 0
  let leftoverMarkers = 0
  const problems: Array<string> = []
  const started = Date.now()

  const converge = async (round: number) => {
    const a = startAgent(reg, { dir: agentDir, name: "web", script, once: true, extra: ["-cleanold"] })
    const t = setTimeout(() => void kill(a), 60_000)
    const { code: exit } = await a.exited
    clearTimeout(t)
    const want = combos.get(`${current.base} ${current.code}`)!
    if (exit !== 0) return problems.push(`round ${round}: the agent did not converge (exit ${exit}):\n${a.log().slice(-1500)}`)
    const state = JSON.parse(readFileSync(path.join(agentDir, "state.json"), "utf8")) as { Hash: string }
    if (state.Hash !== want) problems.push(`round ${round}: state names ${state.Hash}, the configuration is ${want}`)
    // Leftover trees of an interrupted earlier cycle may stay until the next change (agent-faults.test.ts).
    const unpacked = readdirSync(path.join(agentDir, "unpacked"))
    if (!unpacked.includes(want) || !unpacked.includes(`${want}.ok`))
      problems.push(`round ${round}: unpacked/ holds ${unpacked.join(", ")}, not the complete tree of ${want}`)
    const markers = unpacked.filter((n) => n.endsWith(".ok") && n !== `${want}.ok`)
    if (markers.length > 0) leftoverMarkers++
    const cache = readdirSync(path.join(agentDir, "cache"))
    const parts = cache.filter((n) => n.endsWith(".part") || n.startsWith("."))
    if (parts.length > 0) problems.push(`round ${round}: cache/ holds ${parts.join(", ")} after a completed cycle`)
    convergences++
  }

  for (let round = 0; round < ROUNDS; round++) {
    // The budget never cuts the loop below the rounds the test requires, however slow the machine.
    if (BUDGET_MS > 0 && Date.now() - started > BUDGET_MS && rounds >= MIN_ROUNDS) break
    if (rng.chance(0.85)) {
      const next = { base: rng.pick(base).version, code: rng.pick(code).version }
      if (next.base !== current.base || next.code !== current.code) {
        const r = await op.exec(`replaceconf -name web -layer base:${next.base} -layer code:${next.code}`)
        if (r.code !== 0) problems.push(`round ${round}: replaceconf failed: ${r.stdout.toString()}`)
        else current = next
      }
    }
    const a = startAgent(reg, { dir: agentDir, name: "web", script, once: true, extra: ["-cleanold"] })
    // Aim at one phase: wait for the log line that starts it, then a short random delay; or anywhere.
    const target = rng.pick(["download", "unpack", "script", "anywhere"] as const)
    const cue = { download: /downloading layer/, unpack: /downloaded layer|reusing unpacked/, script: /running deploy script/, anywhere: /changed:|up to date/ }[target]
    const workStart = Date.now()
    const begun = await a.waitForLine(cue)
    let phase: Phase
    if (!begun) {
      phase = "finished"
    } else {
      const delay = rng.int(0, target === "anywhere" ? workWindowMs : target === "script" ? 250 : target === "download" ? 150 : 400)
      const finished = await Promise.race([a.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), delay))])
      phase = phaseOf(a.log(), finished)
      if (target === "anywhere") {
        if (finished) workWindowMs = Math.round(0.7 * workWindowMs + 0.3 * (Date.now() - workStart) * 1.1)
        else workWindowMs = Math.min(10_000, Math.round(workWindowMs * 1.05))
      }
    }
    await kill(a)
    kills[phase]++
    rounds++
    const v = existsSync(violations) ? readFileSync(violations, "utf8") : ""
    if (v !== "") problems.push(`round ${round}: the deploy script saw a wrong tree: ${v}`)
    // Converge now and then (and always at the end): a crash must never leave the agent stuck.
    if (rng.chance(0.3)) await converge(round)
    if (problems.length > 0) break
  }
  if (problems.length === 0) await converge(rounds)

  const elapsed = ((Date.now() - started) / 1000).toFixed(1)
  const deployed = existsSync(deploys) ? readFileSync(deploys, "utf8").split("\n").filter((l) => l !== "").length : 0
  console.log(
    `agent crash loop (seed ${rng.seed}): ${rounds} rounds in ${elapsed} s; SIGKILL during ${JSON.stringify(kills)}; ` +
      `${convergences} convergence checks (${leftoverMarkers} with another complete tree left beside the current one); the script checked ${deployed} deploys`
  )
  expect(problems).toEqual([])
  expect(rounds).toBeGreaterThanOrEqual(MIN_ROUNDS)
  expect(deployed).toBeGreaterThan(0)
}, 600_000)
