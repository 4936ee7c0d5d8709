// A deploy is not done until it is healthy (issue 18, docs/rollouts.md): the built agent
// (dist/agent/main.js) with -check against a real registry (dist/registry/main.js). Run
// `npm run build` first.
import type { ChildProcess } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { spawnAgent } from "../support/agent.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { tarGz } from "./fixtures.js"
import { addVersion, run } from "./operator.js"
import { tempDir } from "./support.js"

let reg: TestRegistry
const dirs: Array<string> = []
const live = new Set<ChildProcess>()

beforeAll(async () => {
  reg = await startRegistry()
  dirs.push(reg.dir)
})
afterEach(() => {
  for (const c of live) c.kill("SIGKILL")
  live.clear()
})
afterAll(async () => {
  await reg?.stop()
  for (const d of dirs) await fs.rm(d, { recursive: true, force: true })
})

const count = (text: string, re: RegExp) => text.split("\n").filter((l) => re.test(l)).length

const startAgent = (args: ReadonlyArray<string>, cwd: string) => {
  const a = spawnAgent(args, cwd)
  live.add(a.child)
  const exited = a.exited.then(({ code }) => (live.delete(a.child), code))
  /** Resolves once `re` has matched `times` lines of the log. */
  const waitFor = async (re: RegExp, times = 1, ms = 30_000) => {
    const deadline = Date.now() + ms
    while (count(a.log(), re) < times) {
      if (Date.now() > deadline || a.child.exitCode !== null) throw new Error(`agent log never matched ${re} ${times} time(s):\n${a.log()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return { child: a.child, output: a.log, exited, waitFor }
}

let counter = 0
/**
 * The component every site deploys from: versions good1, bad, good2 and badscript, uploaded once per file
 * (sites read them and never change them; four addvers per test cost the registry ~0.1 s of CPU each).
 */
const C = `sbc-${process.pid}`
let versions: Promise<Record<string, string>> | undefined
const componentVersions = () =>
  (versions ??= (async () => {
    const hashes: Record<string, string> = {}
    for (const v of ["good1", "bad", "good2", "badscript"]) hashes[v] = configHash([await addVersion(reg, C, v, tarGz([{ path: "f", content: `${v === "good1" || v === "good2" ? "good" : v}\n${v}` }]))])
    return hashes
  })())

/**
 * A fresh site: a deploy script recording every run in out/runs ("NEWID OLDID NEWROOT OLDROOT"), and
 * a health check that fails when the tree's file `f` says "bad" or when out/fail-all exists, and a
 * configuration of its own on the file's component (versions good1, bad, good2, and badscript, whose
 * deploy script exits 4).
 */
const site = async (checkExtra = "") => {
  const dir = await tempDir("switch-back-")
  dirs.push(dir)
  const out = path.join(dir, "out")
  await fs.mkdir(out)
  const script = path.join(dir, "deploy.sh")
  await fs.writeFile(
    script,
    `#!/bin/sh\necho "$NEWID $OLDID $NEWROOT $OLDROOT" >> "${out}/runs"\nif grep -q badscript "$NEWROOT/f"; then echo "script: cannot start"; exit 4; fi\necho "switched to $NEWID"\n`,
    { mode: 0o755 }
  )
  const check = path.join(dir, "check.sh")
  await fs.writeFile(
    check,
    `#!/bin/sh\necho "$NEWID" >> "${out}/checks"\n${checkExtra}\nif [ -e "${out}/fail-all" ] || grep -q '^bad$' "$NEWROOT/f"; then echo "unhealthy: $(cat "$NEWROOT/f")"; echo "db unreachable" >&2; exit 1; fi\necho healthy\n`,
    { mode: 0o755 }
  )
  const name = `sb${++counter}-${process.pid}`
  const c = C
  const hashes = await componentVersions()
  const args = (extra: ReadonlyArray<string> = []) => [
    "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.agent.privatePath, "-name", name,
    "-dir", path.join(dir, "work"), "-script", script, "-check", check, "-state", path.join(dir, "state.json"), ...extra
  ]
  const once = async (extra: ReadonlyArray<string> = [], withCheck = true) => {
    const all = args(extra)
    const a = startAgent([...(withCheck ? all : all.filter((x, i) => x !== "-check" && all[i - 1] !== "-check")), "-once"], dir)
    return { code: await a.exited, log: a.output() }
  }
  const lines = async (file: string) => (await fs.readFile(path.join(out, file), "utf8").catch(() => "")).split("\n").filter((l) => l !== "")
  const state = async () => JSON.parse(await fs.readFile(path.join(dir, "state.json"), "utf8"))
  const set = (v: string, cmd = "changeconf") => run(reg, `${cmd} -name ${name} -component ${c} -version ${v}`)
  const add = (v: string) => run(reg, `addconf -name ${name} -layer ${c}:${v}`)
  const root = (h: string) => path.join(dir, "work", "unpacked", h)
  return { dir, out, name, hashes, args, once, runs: () => lines("runs"), checks: () => lines("checks"), state, set, add, root }
}

describe("deploy-agent -check: switch back on failure", () => {
  it("a failing check is rolled back (roles swapped), with its last lines; not retried by a restarted agent", async () => {
    const s = await site()
    const { good1, bad } = s.hashes
    await s.add("good1")
    const first = await s.once()
    expect(first.code, first.log).toBe(0)
    expect(first.log).toContain(`health check passed for ${s.name} ${good1}`)

    await s.set("bad")
    const r = await s.once()
    expect(r.code, r.log).toBe(1)
    // The new tree's script, then the previous tree as the new one (OLDID/OLDROOT and NEWID/NEWROOT swapped).
    expect(await s.runs()).toEqual([`${good1}  ${s.root(good1)} `, `${bad} ${good1} ${s.root(bad)} ${s.root(good1)}`, `${good1} ${bad} ${s.root(good1)} ${s.root(bad)}`])
    expect(await s.checks()).toEqual([good1, bad, good1])
    expect(r.log).toContain("check stdout: unhealthy: bad")
    expect(r.log).toContain(`health check failed for configuration ${s.name} (${bad}): exit status 1; switching back to ${good1}`)
    expect(r.log).toContain(`rolled back configuration ${s.name} from ${bad} to ${good1} (check failed: exit status 1)`)
    const st = await s.state()
    expect(st.Hash).toBe(good1)
    expect(st.Failed).toMatchObject({ Hash: bad, Outcome: "rolled-back", Failure: { Step: "check", Status: "exit status 1" } })
    expect(st.Failed.Failure.Lines).toContain("unhealthy: bad")
    expect(st.Failed.Failure.Lines).toContain("db unreachable")

    // A new agent process (a restart) does not retry it: nothing runs, exit 1 naming it.
    const again = await s.once()
    expect(again.code).toBe(1)
    expect(again.log).toContain(`configuration ${bad} rolled-back at`)
    expect(await s.runs()).toHaveLength(3)
  })

  it("a failing deploy script is rolled back the same way", async () => {
    const s = await site()
    const { good1, badscript } = s.hashes
    await s.add("good1")
    expect((await s.once()).code).toBe(0)
    await s.set("badscript")
    const r = await s.once()
    expect(r.code, r.log).toBe(1)
    expect(r.log).toContain(`deploy script failed for configuration ${s.name} (${badscript}): exit status 4; switching back to ${good1}`)
    expect((await s.runs()).map((l) => l.split(" ")[0])).toEqual([good1, badscript, good1])
    expect(await s.checks()).toEqual([good1, good1]) // no check after a failed script
    const st = await s.state()
    expect(st.Hash).toBe(good1)
    expect(st.Failed).toMatchObject({ Hash: badscript, Outcome: "rolled-back", Failure: { Step: "script", Status: "exit status 4", Lines: ["script: cannot start"] } })
  })

  it("without -check a failing deploy script fails the cycle as before: no switch back, nothing held", async () => {
    const s = await site()
    const { good1, badscript } = s.hashes
    await s.add("good1")
    expect((await s.once([], false)).code).toBe(0)
    await s.set("badscript")
    const r = await s.once([], false)
    expect(r.code, r.log).toBe(1)
    expect(r.log).toContain(`cycle failed: deploy script failed for configuration ${s.name} (${badscript}): exit status 4`)
    expect(r.log).not.toContain("switching back")
    expect((await s.state()).Hash).toBe(good1)
    expect((await s.state()).Failed).toBeUndefined()
    // Retried by the next attempt, as the original agent did.
    await s.once([], false)
    expect((await s.runs()).map((l) => l.split(" ")[0])).toEqual([good1, badscript, badscript])
    expect(await s.checks()).toEqual([])
  })

  it("when the previous tree fails too: failed, left as it is, not retried", async () => {
    const s = await site()
    const { good1, bad } = s.hashes
    await s.add("good1")
    expect((await s.once()).code).toBe(0)
    await fs.writeFile(path.join(s.out, "fail-all"), "")
    await s.set("bad")
    const r = await s.once()
    expect(r.code, r.log).toBe(1)
    expect(r.log).toContain(`switching back configuration ${s.name} to ${good1} failed too (check: exit status 1); left as it is`)
    expect(await s.checks()).toEqual([good1, bad, good1])
    const st = await s.state()
    expect(st.Hash).toBe(good1)
    expect(st.Failed).toMatchObject({ Hash: bad, Outcome: "failed" })
    const again = await s.once()
    expect(again.code).toBe(1)
    expect(await s.checks()).toHaveLength(3)
  })

  it("a first deploy that fails is reported and nothing is switched back (retried with backoff as before)", async () => {
    const s = await site()
    await s.add("bad")
    const r = await s.once()
    expect(r.code).toBe(1)
    expect(r.log).toContain(`first deploy of ${s.name} failed: nothing to switch back to`)
    expect(r.log).toContain(`cycle failed: health check failed for configuration ${s.name} (${s.hashes.bad}): exit status 1`)
    expect(await s.runs()).toHaveLength(1)
    expect(existsSync(path.join(s.dir, "state.json"))).toBe(false)
  })

  it("a check past -check-timeout has its process group killed and counts as failed", async () => {
    const s = await site(`sleep 1000 &\necho $! > "$(dirname "$0")/out/sleeper"\nwait`)
    await s.add("good1")
    const r = await s.once(["-check-timeout", "500ms"])
    expect(r.code).toBe(1)
    expect(r.log).toMatch(/health check .*check\.sh did not exit within 500ms: SIGKILL to its process group/)
    expect(r.log).toContain(`health check failed for configuration ${s.name} (${s.hashes.good1}): timed out after 500ms`)
    const sleeper = Number(await fs.readFile(path.join(s.out, "sleeper"), "utf8"))
    // The check's background child went with its group (once its new parent has reaped it).
    const alive = () => {
      try {
        process.kill(sleeper, 0)
        return !/^State:\s+Z/m.test(readFileSync(`/proc/${sleeper}/status`, "utf8"))
      } catch {
        return false
      }
    }
    await expect.poll(alive, { timeout: 10_000 }).toBe(false)
  })

  it("a running agent does not retry a rolled-back hash at its polls; SIGHUP and a configuration change do", async () => {
    const s = await site()
    const { good1, bad, good2 } = s.hashes
    await s.add("good1")
    // The running agent makes the first deploy too (no -once run before it: one agent start less).
    const a = startAgent(s.args(["-poll", "200ms", "-v"]), s.dir)
    await a.waitFor(new RegExp(`deployed configuration ${s.name} ${good1}`))
    await s.set("bad")
    const rolledBack = new RegExp(`rolled back configuration ${s.name} from ${bad}`)
    const held = new RegExp(`configuration ${s.name} ${bad} rolled-back at .*; not retried`)
    await a.waitFor(rolledBack)
    await a.waitFor(held, 3) // three polls later, still not retried
    expect(await s.checks()).toEqual([good1, bad, good1])

    a.child.kill("SIGHUP")
    await a.waitFor(new RegExp(`retrying configuration ${s.name} ${bad} \\(rolled-back at`))
    await a.waitFor(rolledBack, 2)
    expect(await s.checks()).toEqual([good1, bad, good1, bad, good1])

    // The configuration changes: the new one deploys; when it changes back, the failed hash is tried again.
    await s.set("good2")
    await a.waitFor(new RegExp(`deployed configuration ${s.name} ${good2}`))
    expect((await s.state()).Failed).toBeUndefined()
    await s.set("bad")
    await a.waitFor(new RegExp(`rolled back configuration ${s.name} from ${bad} to ${good2}`))
    expect((await s.checks()).slice(5)).toEqual([good2, bad, good2])
    a.child.kill("SIGTERM")
    expect(await a.exited).toBe(0)
  })

  it("-retry-failed retries a rolled-back hash once that long has passed", async () => {
    const s = await site()
    const { good1, bad } = s.hashes
    await s.add("good1")
    const a = startAgent(s.args(["-poll", "200ms", "-retry-failed", "1s"]), s.dir)
    await a.waitFor(new RegExp(`deployed configuration ${s.name} ${good1}`))
    await s.set("bad")
    await a.waitFor(new RegExp(`rolled back configuration ${s.name} from ${bad}`))
    await a.waitFor(new RegExp(`retrying configuration ${s.name} ${bad}`))
    await a.waitFor(new RegExp(`rolled back configuration ${s.name} from ${bad}`), 2)
    a.child.kill("SIGTERM")
    expect(await a.exited).toBe(0)
  })
})
