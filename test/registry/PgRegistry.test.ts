// A registry on PostgreSQL (-db) end to end, as the BUILT programs (`npm run build` first): deployctl
// uploads and configures, an agent deploys, a second replica (own -dir, empty cache) serves the same
// blobs, `verify -db` is clean. The kill -9 and database-restart cases are in the reliability tier:
// test/reliability/pg-faults.test.ts.
import * as fs from "node:fs/promises"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { tarGz } from "../agent/fixtures.js"
import { ctlMain } from "../ctl/harness.js"
import { exec } from "../agent/operator.js"
import { spawnAgent } from "../support/agent.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"
import { counts, node, pgRegistry } from "../support/pgRegistry.js"
import { registryMain, tempDir, type TestRegistry } from "../support/registry.js"
import { testResources } from "../support/resources.js"

describe.skipIf(postgresMissing() !== undefined)("deploy-registry -db postgres://…", () => {
  const pg = usePostgres()
  const res = testResources()
  const registry = pgRegistry(res)

  /** An agent run once for `name` against `reg`; returns the unpacked file's content. */
  const deployOnce = async (reg: TestRegistry, keyOf: TestRegistry, name: string, hash: string) => {
    const site = await tempDir("pg-site-")
    res.dirs.push(site)
    const script = path.join(site, "deploy.sh")
    await fs.writeFile(script, "#!/bin/sh\necho deployed $NEWID\n", { mode: 0o755 })
    const a = spawnAgent(["-addr", reg.addr, "-fp", reg.fingerprint, "-key", keyOf.agent.privatePath, "-name", name,
      "-dir", path.join(site, "work"), "-script", script, "-state", path.join(site, "state.json"), "-once"], site)
    res.agents.push(a)
    const { code } = await a.exited
    expect(code, a.log()).toBe(0)
    return fs.readFile(path.join(site, "work", "unpacked", hash, "app", "main.js"), "utf8")
  }
  it("deployctl addver/addconf, an agent deploys, a second replica serves the same blobs, verify -db is clean", async () => {
    const url = await pg().createDatabase()
    const reg = await registry(url)
    const work = await tempDir("pg-work-")
    res.dirs.push(work)
    await fs.writeFile(path.join(work, "app.tar.gz"), tarGz([{ path: "app/main.js", content: "v1 on postgres" }]))
    const ctl = (...args: Array<string>) =>
      node([ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, ...args], work)
    expect((await ctl("addver", "-name", "app", "-version", "v01", "-file", "app.tar.gz")).code).toBe(0)
    expect((await ctl("addconf", "-name", "site", "-layer", "app:v01")).code).toBe(0)
    const shown = await ctl("showconf", "-name", "site", "-json")
    const hash = JSON.parse(shown.out).Hash as string
    // Metadata and blobs are in PostgreSQL, not in -dir.
    expect(existsSync(path.join(reg.dir, "state.db"))).toBe(false)
    expect(await counts(url)).toMatchObject({ blobs: 1, versions: 1 })
    expect(await deployOnce(reg, reg, "site", hash)).toBe("v1 on postgres")

    // Another replica: its own -dir (own host key, empty cache; the same key files), the same database.
    const otherDir = await tempDir("deploy-registry-")
    for (const f of ["test-keys", "operator.keys", "service.keys"]) await fs.cp(path.join(reg.dir, f), path.join(otherDir, f), { recursive: true })
    const other = await registry(url, otherDir)
    expect((await exec(other, "configurations")).output).toBe("site\n")
    expect(await deployOnce(other, reg, "site", hash)).toBe("v1 on postgres")

    const verified = await node([registryMain, "verify", "-db", url])
    expect(verified.out).toMatch(/^ok/m)
    expect(verified.code).toBe(0)
  })
})
