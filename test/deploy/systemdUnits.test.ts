// deploy/systemd/: both units pass `systemd-analyze verify` with the programs where the documented
// install puts them (/usr/local/bin, linked from /opt/deploy-tools), and verify fails without them,
// so it really checks the ExecStart paths. CI installs systemd (.ci/run); elsewhere it may be absent.
import { cp, readFile, rm } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot } from "../support/registry.js"
import { makeVerifyRoot, systemdAnalyze, verifyUnits } from "../support/systemd.js"

const units = path.join(repoRoot, "deploy/systemd")
// /bin/kill: the agent unit's ExecReload (/bin is a link to usr/bin in the root, as on Debian)
const programs = ["/usr/local/bin/deploy-registry", "/usr/local/bin/deploy-agent", "/usr/bin/kill"]
const canRun = systemdAnalyze !== undefined || process.env.CI !== undefined

describe.runIf(canRun)("deploy/systemd units", () => {
  const roots: Array<string> = []
  afterAll(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true })
  })
  const rootWith = async (executables: ReadonlyArray<string>) => {
    const root = await makeVerifyRoot(executables)
    roots.push(root)
    for (const u of ["deploy-registry.service", "deploy-agent@.service"]) {
      await cp(path.join(units, u), path.join(root, "etc/systemd/system", u))
    }
    return root
  }

  it("systemd-analyze is installed (CI must not skip these checks)", () => {
    expect(systemdAnalyze).toBeDefined()
  })

  it("both units verify with the programs in /usr/local/bin", async () => {
    const root = await rootWith(programs)
    const r = await verifyUnits(root, ["deploy-registry.service", "deploy-agent@project1.service"])
    expect(r.output).toBe("")
    expect(r.ok).toBe(true)
  })

  it("verify fails when a program is not at the unit's ExecStart path", async () => {
    for (const [missing, unit] of [
      ["/usr/local/bin/deploy-agent", "deploy-agent@project1.service"],
      ["/usr/local/bin/deploy-registry", "deploy-registry.service"]
    ] as const) {
      const root = await rootWith(programs.filter((p) => p !== missing))
      const r = await verifyUnits(root, [unit])
      expect(r.ok).toBe(false)
      expect(r.output).toContain(`Command ${missing} is not executable`)
    }
  })

  it("ExecStart names the documented install path, as docs/registry.md and docs/agent.md say", async () => {
    for (const [unit, program, doc] of [
      ["deploy-registry.service", "/usr/local/bin/deploy-registry", "docs/registry.md"],
      ["deploy-agent@.service", "/usr/local/bin/deploy-agent", "docs/agent.md"]
    ] as const) {
      const text = await readFile(path.join(units, unit), "utf8")
      expect(/^ExecStart=(\S+)/m.exec(text)?.[1]).toBe(program)
      expect(await readFile(path.join(repoRoot, doc), "utf8")).toContain(program)
    }
  })
})
