// A staged rollout across three registry replicas on one real PostgreSQL database (the BUILT programs:
// `npm run build` first). Agents (-host h0…h5, a deploy script that logs what and when it deploys, a
// -check health check as in Rollouts.test.ts) are given all three addresses and spread over them. The
// rollout is started on a replica that does not lead: the leader drives it, -pause/-resume work on any
// replica, and hosts watching any replica get the target only once their wave is admitted. The leader is killed with kill -9 mid-rollout:
// another replica takes over and completes it; history lists it once with each wave admitted once, and
// `verify -db` is clean. The figures are printed in the test log.
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { tarGz } from "../agent/fixtures.js"
import { addVersion, run } from "../agent/operator.js"
import { spawnAgent } from "../support/agent.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"
import { registryMain, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"
import { addrList, startSibling } from "../support/replicas.js"
import { testResources } from "../support/resources.js"

const HOSTS = ["h0", "h1", "h2", "h3", "h4", "h5"]
const LEADS = /leadership: this replica leads/

const until = async (cond: () => boolean | Promise<boolean>, what: string, ms = 60_000) => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for: ${what}`)
}

interface StatusJson {
  Phase: string
  Waves: Array<{ Wave: number; Admitted?: string; Hosts: Array<{ Host: string }> }>
}

describe.skipIf(postgresMissing() !== undefined)("a rollout across three replicas on PostgreSQL", () => {
  const pg = usePostgres()
  const res = testResources()

  it("started on a follower, admits waves with hosts on every replica, and completes after kill -9 of the leader", async () => {
    const url = await pg().createDatabase()
    const args = ["-db", url, "-watch-ping", "500ms", "-rollout-tick", "100ms"]
    const first = await startRegistry({ extraArgs: args })
    const replicas = [first, await startSibling(first, args), await startSibling(first, args)]
    for (const r of replicas) {
      res.registries.push(r)
      res.dirs.push(r.dir)
    }
    const hash: Record<string, string> = {}
    for (const v of ["good1", "good2"]) hash[v] = configHash([await addVersion(first, "code", v, tarGz([{ path: "f", type: "file", content: v }]))])
    await run(first, "addconf -name p1 -layer code:good1")

    const dir = await tempDir("replica-rollout-")
    res.dirs.push(dir)
    const check = path.join(dir, "check.sh")
    await fs.writeFile(check, `#!/bin/sh\ngrep -q good "$NEWROOT/f" || { echo "release is bad" >&2; exit 1; }\n`, { mode: 0o755 })
    for (const h of HOSTS) {
      const script = path.join(dir, `${h}.deploy.sh`)
      await fs.writeFile(script, `#!/bin/sh\necho "$NEWID $(date +%s%3N)" >> ${path.join(dir, `${h}.deploys`)}\n`, { mode: 0o755 })
      res.agents.push(spawnAgent(["-addr", addrList(...replicas), "-fp", first.fingerprint, "-key", first.agent.privatePath, "-name", "p1",
        "-dir", path.join(dir, h), "-script", script, "-check", check, "-host", h, "-poll", "1h", "-ping", "500ms", "-reconnect", "200ms"], dir))
    }
    /** Each host's deploys: hash and the time its deploy script ran. */
    const deploys = async (h: string) =>
      (await fs.readFile(path.join(dir, `${h}.deploys`), "utf8").catch(() => "")).split("\n").filter((l) => l !== "").map((l) => {
        const [id, ms] = l.split(" ")
        return { hash: id!, at: Number(ms) }
      })
    await until(async () => (await Promise.all(HOSTS.map(deploys))).every((d) => d.at(-1)?.hash === hash.good1), "every host runs good1")
    await until(() => replicas.some((r) => LEADS.test(r.log())), "a replica leads")
    const leader = replicas.find((r) => LEADS.test(r.log()))!
    const followers = replicas.filter((r) => r !== leader)
    const spread = replicas.map((r) => (r.log().match(/watches configuration/g) ?? []).length)

    // Started on a follower; steps by the leader, which must know it from the database.
    await run(followers[0]!, "rollout -name p1 -component code -version good2 -waves 1,2,4,100% -soak 1s")
    const status = async (reg: TestRegistry) => JSON.parse(await run(reg, "rollout -name p1 -status -json")) as StatusJson
    // -pause and -resume act on the stored row from any replica.
    expect(await run(followers[1]!, "rollout -name p1 -pause")).toContain("paused")
    expect((await status(leader)).Phase).toBe("paused")
    expect(await run(leader, "rollout -name p1 -resume")).toContain("running")
    await until(async () => (await status(followers[1]!)).Waves.filter((w) => w.Admitted !== undefined).length >= 2, "wave 2 admitted by the leader")
    const before = await status(followers[1]!)
    expect(before.Phase).toBe("running")
    const admittedBefore = before.Waves.filter((w) => w.Admitted !== undefined).length
    await leader.stop("SIGKILL")

    // Another replica leads and completes the rollout; every host ends on good2.
    await until(async () => (await status(followers[1]!)).Phase === "completed", "the rollout completes after the leader's kill -9", 90_000)
    await until(async () => (await Promise.all(HOSTS.map(deploys))).every((d) => d.at(-1)?.hash === hash.good2), "every host runs good2")
    expect(followers.some((r) => LEADS.test(r.log()))).toBe(true)

    // Each host got the target only once its wave was admitted (and ran it once).
    const done = await status(followers[0]!)
    const early: Array<string> = []
    for (const w of done.Waves) {
      for (const { Host } of w.Hosts) {
        const got = (await deploys(Host)).filter((d) => d.hash === hash.good2)
        expect(got.length, Host).toBe(1)
        if (got[0]!.at < Date.parse(w.Admitted!)) early.push(`${Host} (wave ${w.Wave})`)
      }
    }
    expect(early).toEqual([])

    // History: the target once, current, its rollout completed with each wave admitted once; verify clean.
    const history = JSON.parse(await run(followers[0]!, "history -name p1 -json")) as Array<{ Hash: string; Current: boolean; Rollout?: { Phase: string; Events: Array<{ Text: string }> } }>
    const targets = history.filter((s) => s.Hash === hash.good2)
    expect(targets.map((s) => [s.Current, s.Rollout?.Phase])).toEqual([[true, "completed"]])
    const admissions = targets[0]!.Rollout!.Events.map((e) => e.Text).filter((t) => /^wave \d+ admitted/.test(t)).map((t) => t.replace(/:.*/, ""))
    expect(admissions).toEqual(done.Waves.map((w) => `wave ${w.Wave} admitted`))
    const verified = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(process.execPath, [registryMain, "verify", "-db", url], { stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      c.stdout.on("data", (b: Buffer) => (out += b.toString()))
      c.stderr.on("data", (b: Buffer) => (out += b.toString()))
      c.once("exit", (code) => resolve({ code, out }))
    })
    const steps = targets[0]!.Rollout!.Events.length
    console.log(`replicas rollout: ${done.Waves.length} waves over ${HOSTS.length} hosts (watch sessions per replica at start: ${spread.join("/")}), leader killed after wave ${admittedBefore}; ` +
      `acknowledged: 1 rollout, ${steps} stored steps/events; lost: 0; hosts early: ${early.length}; verify: ${verified.out.trim()}`)
    expect(verified.code, verified.out).toBe(0)
    for (const r of replicas) await r.stop("SIGKILL")
  }, 180_000)
})
