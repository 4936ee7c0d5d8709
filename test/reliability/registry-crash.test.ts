// Crash consistency of the registry: rounds of uploads and changing commands, each round cut short by
// SIGKILL at a random moment, then a restart on the same dir and port. After every restart:
//   - every command whose exit status 0 reached the client is in effect, every one that reported 1 is not,
//     commands cut off by the kill are either fully in effect or not at all, nothing else changed;
//   - `deploy-registry verify -dir` (run on the crashed dir, while the registry restarts on it) passes, and so
//     does the `verify` command of the restarted registry;
//   - no temp file is left in <dir>/uploads and nothing but blobs is in <dir>/files.
// Knobs: RELIABILITY_ROUNDS (default 100), RELIABILITY_BUDGET_S (default 120 under `npm run test:reliability`, 8 in CI and when unset; 0 = no time limit: the loop
// stops early when the budget is spent), RELIABILITY_VERIFY_EVERY (verify -dir every N rounds, default 1),
// RELIABILITY_SEED (replay).
import { readdirSync, rmSync } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import type { ExecResult } from "../../src/ssh/Exec.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { openSession, type Session } from "./lib/client.js"
import { envInt, killNow, spawnRegistry, verifyDir, loopBudgetMs } from "./lib/proc.js"
import { makeRng } from "./lib/random.js"
import { layerOf } from "../support/tar.js"
import { type Expect, readState, type RegistryState, showconf, splitKey, versionKey } from "./lib/state.js"

const ROUNDS = envInt("RELIABILITY_ROUNDS", 100)
const BUDGET_MS = loopBudgetMs()
const MIN_ROUNDS = Math.min(ROUNDS, 5)
const rng = makeRng()
const ROUND_TIMEOUT_MS = 60_000
// `deploy-registry verify -dir` (run beside the restart) every N rounds; the registry's own `verify` runs after every round.
const VERIFY_EVERY = Math.max(1, envInt("RELIABILITY_VERIFY_EVERY", 1))

let reg: TestRegistry
// Retention must not remove versions behind the test's back.
const EXTRA = ["-maxver", "1000000"]

beforeAll(async () => {
  reg = await startRegistry({ extraArgs: EXTRA })
})

afterAll(async () => {
  await reg?.stop("SIGKILL")
  if (reg) rmSync(reg.dir, { recursive: true, force: true })
})

type Outcome = "ok" | "failed" | "unknown" | "not sent"

interface Stats {
  rounds: number
  kills: number
  killedMidUpload: number
  killedMidCommand: number
  orphanTempsSeen: number
  offlineVerifies: number
  startupKills: number
  commands: Record<Outcome, number>
}

const COMPONENTS = ["c0", "c1", "c2", "c3"]

it("keeps every acknowledged change and nothing else across SIGKILLs", async () => {
  const stats: Stats = {
    rounds: 0, kills: 0, killedMidUpload: 0, killedMidCommand: 0, orphanTempsSeen: 0, offlineVerifies: 0, startupKills: 0,
    commands: { ok: 0, failed: 0, unknown: 0, "not sent": 0 }
  }
  const problems: Array<string> = []

  // Seed: two versions of two components and one configuration.
  {
    const s = await openSession(reg, reg.operator.privatePath)
    for (const c of ["c0", "c1"]) {
      for (const v of ["v0", "v1"]) {
        const h = await s.upload(layerOf(rng.bytes(1000 + rng.int(0, 5000))))
        expect((await s.exec(`addver -name ${c} -version ${v} -hash ${h}`)).code).toBe(0)
      }
    }
    expect((await s.exec("addconf -name p0 -layer c0:v0 -layer c1:v0")).code).toBe(0)
    await s.close()
  }

  let baseline = await withSession((s) => readState(s))
  let killWindowMs = 300
  const started = Date.now()

  for (let round = 0; round < ROUNDS; round++) {
    // The budget never cuts the loop below the rounds the test requires, however slow the machine, nor before one
    // command got through: on a loaded machine the first rounds' kills all land before the client is connected
    // (seen in CI: 5 rounds, every command "not sent"); the kill window grows with each such round.
    if (BUDGET_MS > 0 && Date.now() - started > BUDGET_MS && stats.rounds >= MIN_ROUNDS && stats.commands.ok > 0) break
    const phase: { at: string; b?: string } = { at: "start" }
    let timer: NodeJS.Timeout | undefined
    const r = await Promise.race([
      crashRound(round, baseline, killWindowMs, stats, problems, phase),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ROUND_TIMEOUT_MS)
      })
    ]).finally(() => clearTimeout(timer))
    if (r === undefined) {
      problems.push(`round ${round}: no progress for ${ROUND_TIMEOUT_MS / 1000} s (stuck at: ${phase.at}; B: ${phase.b})`)
      break
    }
    // Aim the kills over the whole round: learn its length from rounds the kill did not cut short.
    killWindowMs = r.cut ? Math.min(3000, Math.round(killWindowMs * 1.5)) : Math.max(100, Math.min(3000, Math.round(0.7 * killWindowMs + 0.3 * r.opsMs * 1.2)))
    baseline = r.after
    stats.rounds++
    if (problems.length > 0) break // the first inconsistency is the interesting one
  }

  const elapsed = ((Date.now() - started) / 1000).toFixed(1)
  console.log(
    `registry crash loop (seed ${rng.seed}): ${stats.rounds} rounds in ${elapsed} s; ${stats.kills} SIGKILLs ` +
      `(+ ${stats.startupKills} during a restart) ` +
      `(${stats.killedMidUpload} mid-upload, ${stats.killedMidCommand} mid-command), ${stats.orphanTempsSeen} orphaned temp files seen after a kill; ${stats.offlineVerifies} verify -dir runs; ` +
      `commands: ${JSON.stringify(stats.commands)}`
  )
  expect(problems).toEqual([])
  expect(stats.rounds).toBeGreaterThanOrEqual(MIN_ROUNDS)
  expect(stats.commands.ok).toBeGreaterThan(0)
}, 600_000)

const withSession = async <A>(f: (s: Session) => Promise<A>): Promise<A> => {
  const s = await openSession(reg, reg.operator.privatePath)
  try {
    return await f(s)
  } finally {
    await s.close()
  }
}

/** One round: plan from `baseline`, run while a SIGKILL is pending, restart, compare. */
const crashRound = async (
  round: number,
  baseline: RegistryState,
  killWindowMs: number,
  stats: Stats,
  problems: Array<string>,
  phase: { at: string; b?: string }
): Promise<{ after: RegistryState; opsMs: number; cut: boolean }> => {
  const expV = new Map<string, Expect>([...baseline.versions].map(([k, h]) => [k, [h]]))
  const expC = new Map<string, Expect>([...baseline.configs].map(([k, l]) => [k, [l]]))
  const log: Array<string> = []
  let killed = false

  const settle = (
    onOk: () => void, onFail: () => void, onUnknown: () => void, expected: "ok" | "failed" | "either" = "either"
  ) => async (command: string, p: () => Promise<ExecResult>): Promise<Outcome> => {
    if (killed) {
      stats.commands["not sent"]++
      onFail()
      return "not sent"
    }
    let outcome: Outcome
    let out = ""
    try {
      const res = await p()
      out = res.stdout.toString().trim()
      outcome = res.code === 0 ? "ok" : res.code === 1 ? "failed" : "unknown"
    } catch {
      outcome = killed ? "unknown" : "failed"
      if (!killed) problems.push(`round ${round}: "${command}" lost its connection although the registry was not killed`)
    }
    stats.commands[outcome]++
    log.push(`${command} → ${outcome}${out ? ` (${out})` : ""}`)
    if (outcome === "ok") onOk()
    else if (outcome === "failed") onFail()
    else onUnknown()
    if (outcome === "ok" && expected === "failed") problems.push(`round ${round}: "${command}" succeeded but must fail`)
    if (outcome === "failed" && expected === "ok" && !killed) problems.push(`round ${round}: "${command}" failed: ${out}`)
    return outcome
  }
  const fact = (m: Map<string, Expect>, key: string, ifOk: string | null) => {
    const before = m.get(key) ?? [null]
    return settle(
      () => m.set(key, [ifOk]),
      () => m.set(key, before),
      () => m.set(key, [ifOk, ...before])
    )
  }

  // --- the plan (each command touches facts no other command of the round touches) ---
  const configs = [...baseline.configs.keys()]
  const versions = [...baseline.versions.keys()]
  const used = new Set<string>()
  for (const layers of baseline.configs.values()) for (const l of layers.split(" ")) used.add(versionKey(...(l.split(":") as [string, string])))
  const byComponent = new Map<string, Array<string>>()
  for (const k of versions) {
    const [c, v] = splitKey(k)
    byComponent.set(c, [...(byComponent.get(c) ?? []), v])
  }

  const changeTarget = configs.length > 0 ? rng.pick(configs) : undefined
  const deleteConf = configs.filter((c) => c !== changeTarget && c !== "p0")
  const confToDelete = deleteConf.length > 3 || (deleteConf.length > 0 && rng.chance(0.3)) ? rng.pick(deleteConf) : undefined
  const reserved = new Set<string>()
  // addconf of a new configuration from 1..3 components
  const newConfLayers: Array<string> = []
  for (const c of rng.shuffle([...byComponent.keys()].filter((c) => c !== "big")).slice(0, rng.int(1, 3))) {
    const v = rng.pick(byComponent.get(c)!)
    newConfLayers.push(`${c}:${v}`)
    reserved.add(versionKey(c, v))
  }
  // changeconf: one layer of changeTarget to another version of its component
  let change: { component: string; version: string; expect?: string; stale: boolean } | undefined
  if (changeTarget) {
    const layers = baseline.configs.get(changeTarget)!.split(" ")
    const [c, cur] = rng.pick(layers).split(":") as [string, string]
    const others = (byComponent.get(c) ?? []).filter((v) => v !== cur)
    if (others.length > 0) {
      const v = rng.pick(others)
      reserved.add(versionKey(c, v))
      change = { component: c, version: v, stale: rng.chance(0.2) }
    }
  }
  // delver: versions no configuration uses and no command of this round names
  const deletable = versions.filter((k) => !used.has(k) && !reserved.has(k))
  const toDelete = rng.shuffle(deletable).slice(0, deletable.length > 14 ? 3 : rng.int(0, 1))

  // --- run: A (commands) and B (a large upload + addver) in parallel, SIGKILL pending ---
  let a: Session
  let b: Session
  try {
    ;[a, b] = await Promise.all([openSession(reg, reg.operator.privatePath), openSession(reg, reg.operator.privatePath)])
  } catch (e) {
    problems.push(`round ${round}: cannot connect to the restarted registry: ${(e as Error).message}`)
    return { after: baseline, opsMs: 0, cut: true }
  }
  phase.at = "showconf before the round"
  const currentHash = changeTarget && change && !change.stale ? (await showconf(a, changeTarget)).Hash : "0".repeat(64)
  if (change) change.expect = rng.chance(0.5) || change.stale ? currentHash : undefined

  let uploading = false
  let acked = 0
  let inCommand = 0
  const t0 = Date.now()
  const killAt = rng.int(0, killWindowMs)
  const killer = new Promise<void>((resolve) =>
    setTimeout(() => {
      killed = true
      stats.kills++
      if (uploading && acked > 0) stats.killedMidUpload++
      if (inCommand > 0) stats.killedMidCommand++
      void reg.stop("SIGKILL").then(() => resolve())
    }, killAt)
  )
  const run = (s: Session, cmd: string) => () => {
    inCommand++
    phase.at = `exec ${cmd}`
    return s.exec(cmd).finally(() => inCommand--)
  }

  const chainA = async () => {
    const small = layerOf(rng.bytes(rng.int(1000, 200_000)))
    let hash: string | undefined
    if (!killed) {
      try {
        hash = await a.upload(small)
      } catch {
        if (!killed) problems.push(`round ${round}: small upload failed although the registry was not killed`)
      }
    }
    const steps: Array<() => Promise<unknown>> = []
    const comp = rng.pick(COMPONENTS)
    if (hash !== undefined) {
      const h = hash
      const cmd = `addver -name ${comp} -version r${round}a -hash ${h}`
      steps.push(() => fact(expV, versionKey(comp, `r${round}a`), h)(cmd, run(a, cmd)))
    }
    if (newConfLayers.length > 0) {
      const cmd = `addconf -name q${round} ${newConfLayers.map((l) => `-layer ${l}`).join(" ")}`
      steps.push(() => fact(expC, `q${round}`, newConfLayers.join(" "))(cmd, run(a, cmd)))
    }
    if (change && changeTarget) {
      const layers = baseline.configs.get(changeTarget)!.split(" ")
      const next = layers.map((l) => (l.startsWith(`${change.component}:`) ? `${change.component}:${change.version}` : l)).join(" ")
      const cmd = `changeconf -name ${changeTarget} -component ${change.component} -version ${change.version}${change.expect ? ` -expect ${change.expect}` : ""}`
      const before = expC.get(changeTarget)!
      steps.push(() =>
        settle(() => expC.set(changeTarget, [next]), () => expC.set(changeTarget, before), () => expC.set(changeTarget, [next, ...before]),
          change.stale ? "failed" : "ok")(cmd, run(a, cmd)))
    }
    for (const k of toDelete) {
      const [c, v] = splitKey(k)
      const cmd = `delver -name ${c} -version ${v}`
      steps.push(() => fact(expV, k, null)(cmd, run(a, cmd)))
    }
    if (confToDelete) {
      const cmd = `delconf -name ${confToDelete} -force`
      steps.push(() => fact(expC, confToDelete, null)(cmd, run(a, cmd)))
    }
    // Commands that must fail and change nothing: a duplicate version, a configuration of an unknown version.
    const kept = versions.filter((k) => !toDelete.includes(k))
    const existing = kept.length > 0 ? splitKey(rng.pick(kept)) : undefined
    if (existing && hash !== undefined) {
      const cmd = `addver -name ${existing[0]} -version ${existing[1]} -hash ${hash}`
      steps.push(() => settle(() => undefined, () => undefined, () => undefined, "failed")(cmd, run(a, cmd)))
    }
    {
      const cmd = `addconf -name bad${round} -layer c0:nosuchversion`
      steps.push(() => fact(expC, `bad${round}`, "c0:nosuchversion")(cmd, run(a, cmd)).then((o) => {
        if (o === "ok") problems.push(`round ${round}: ${cmd} succeeded`)
      }))
    }
    for (const step of rng.shuffle(steps)) await step()
  }

  const chainB = async () => {
    if (killed) return
    const big = layerOf(rng.bytes(rng.int(1, 6) * 1024 * 1024))
    let hash: string | undefined
    uploading = true
    try {
      phase.b = "large upload"
      hash = await b.upload(big, "big.bin", (n) => {
        acked = n
      })
    } catch {
      if (!killed) problems.push(`round ${round}: large upload failed although the registry was not killed`)
    } finally {
      uploading = false
    }
    if (hash === undefined) return
    const h = hash
    const cmd = `addver -name big -version r${round} -hash ${h}`
    phase.b = cmd
    await fact(expV, versionKey("big", `r${round}`), h)(cmd, run(b, cmd))
    phase.b = "done"
  }

  phase.at = "commands"
  await Promise.all([chainA(), chainB()])
  const opsMs = Date.now() - t0
  phase.at = "waiting for the kill"
  await killer
  phase.at = "closing clients"
  await Promise.all([a.close().catch(() => undefined), b.close().catch(() => undefined)])

  const tempsAfterKill = readdirSync(path.join(reg.dir, "uploads")).filter((n) => n.startsWith(".tmp-"))
  stats.orphanTempsSeen += tempsAfterKill.length

  // verify -dir on the crashed store, while the registry restarts on it.
  // verify -dir on the crashed store, while the registry restarts on it (verify must tolerate the restarted
  // registry's cleanup running at the same time: G-bugs.md, verify vs. retention).
  phase.at = "restart (+ verify -dir)"
  const offline = round % VERIFY_EVERY === 0 ? verifyDir(reg.dir) : undefined
  if (rng.chance(0.2)) {
    // Now and then the first restart dies too, somewhere in its start (sweep, retention, listen).
    const early = spawnRegistry(reg.dir, reg.port, EXTRA)
    await new Promise((r) => setTimeout(r, rng.int(50, 1200)))
    await killNow(early)
    stats.startupKills++
  }
  await reg.restart()
  if (offline) {
    stats.offlineVerifies++
    const v = await offline
    if (v.code !== 0) problems.push(`round ${round}: verify -dir failed after the kill: ${v.stdout}${v.stderr}`)
  }

  const leftovers = readdirSync(path.join(reg.dir, "uploads")).filter((n) => !/^[0-9a-f]{64}$/.test(n))
  if (leftovers.length > 0) problems.push(`round ${round}: uploads/ holds ${leftovers.join(", ")} after the restart`)
  const strays = readdirSync(path.join(reg.dir, "files")).filter((n) => !/^[0-9a-f]{64}$/.test(n))
  if (strays.length > 0) problems.push(`round ${round}: files/ holds ${strays.join(", ")} after the restart`)

  phase.at = "reading the state after restart"
  const { after, online } = await withSession(async (s) => ({ after: await readState(s), online: await s.exec("verify") }))
  if (online.code !== 0) problems.push(`round ${round}: verify after restart: ${online.stdout.toString()}`)

  const compare = (what: string, exp: Map<string, Expect>, actual: Map<string, string>) => {
    for (const key of new Set([...exp.keys(), ...actual.keys()])) {
      const allowed = exp.get(key) ?? [null]
      const got = actual.get(key) ?? null
      if (!allowed.includes(got)) {
        problems.push(
          `round ${round}: ${what} ${key.replace("\u0000", ":")} is ${JSON.stringify(got)}, expected one of ${JSON.stringify(allowed)}; ` +
            `kill after ${killAt} ms; commands: ${log.join("; ")}`
        )
      }
    }
  }
  compare("version", expV, after.versions)
  compare("configuration", expC, after.configs)
  return { after, opsMs, cut: killAt < opsMs }
}
