// The BUILT deploy-registry (`npm run build` first) on the data directory the original Go registry
// wrote (../shared/fixtures/go-registry): `import`, then serving it as agents and operators see it,
// and the one-line refusal to start on a Go data directory.
import { promises as fs, statSync } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  clientSftp, connectClient, registryMain, runProgram, ssh, startRegistry, tempDir, type TestRegistry
} from "../../support/registry.js"
import { agentMain } from "../../support/agent.js"
import { FIXTURE } from "../../support/goRegistry.js"

const FINGERPRINT = "SHA256:7jbi39BqrUtmzS76jCfIWuLgwJdCgtQ3JyIXSMLtg+I"
const cleanup: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => undefined)
})
const scratch = async (prefix: string, base?: string) => {
  const d = base === undefined ? await tempDir(prefix) : await fs.mkdtemp(path.join(base, prefix))
  cleanup.push(() => fs.rm(d, { recursive: true, force: true }))
  return d
}
/** A copy of the fixture's data directory (the shared one is never used directly). */
const goCopy = async (base?: string) => {
  const d = path.join(await scratch("go-data-", base), "data")
  await fs.cp(path.join(FIXTURE, "data"), d, { recursive: true })
  return d
}
const registry = (args: ReadonlyArray<string>) => runProgram("node", [registryMain, ...args])
const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))

describe("deploy-registry import of the Go registry's fixture", () => {
  let goDir: string
  let dir: string
  let reg: TestRegistry

  beforeAll(async () => {
    goDir = await goCopy()
    dir = path.join(await scratch("imported-"), "registry")
  })

  it("imports: one summary, the Go host key kept, verify passes", async () => {
    const r = await registry(["import", "-from", goDir, "-dir", dir])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      `imported ${goDir} into ${dir}: 2 components, 5 versions, 2 configurations with 5 states; blobs: 5 linked, 0 copied\n` +
        `host key kept: ${FINGERPRINT}\n`
    )
    const v = await registry(["verify", "-dir", dir])
    expect(v).toMatchObject({ code: 0, stdout: "ok: 5 blobs, 5 versions, 2 configurations checked\n" })
  })

  it("serves each configuration with the hash and layers the Go registry served, under the same host key", async () => {
    reg = await startRegistry({ dir })
    cleanup.push(() => reg.stop("SIGKILL"))
    expect(reg.fingerprint).toBe(FINGERPRINT)
    const agent = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
    cleanup.push(async () => agent.end())
    const s = await clientSftp(agent)
    for (const name of ["project1", "web"]) {
      const served = JSON.parse((await p<Buffer>((cb) => s.readFile(`/configs/${name}.json`, cb))).toString())
      const expected = JSON.parse(await fs.readFile(path.join(FIXTURE, "expected", `${name}.json`), "utf8"))
      expect(served.Hash, name).toBe(expected.Hash)
      const ms = (t: string) => new Date(t).toISOString()
      const layers = (d: { Layers: Array<Record<string, string>> }) =>
        d.Layers.map((l) => ({ Name: l.Name, Version: l.Version, File: l.File, Hash: l.Hash, Ctime: ms(l.Ctime!) }))
      expect(layers(served), name).toEqual(layers(expected))
      expect(ms(served.Mtime), name).toBe(ms(expected.Mtime))
    }
  })

  it("an agent that deployed from the Go registry finds nothing to do; a fresh one deploys", async () => {
    const agentRun = async (state: string | undefined) => {
      const work = await scratch("agent-")
      await fs.writeFile(path.join(work, "deploy.sh"), "#!/bin/sh\necho \"$NEWID\" > \"$(dirname \"$0\")/deployed\"\n", { mode: 0o755 })
      if (state !== undefined) await fs.writeFile(path.join(work, "state.json"), state)
      const r = await runProgram(process.execPath, [agentMain, "-once", "-addr", `127.0.0.1:${reg.port}`, "-name", "project1",
        "-key", reg.agent.privatePath, "-fp", FINGERPRINT, "-dir", work, "-script", path.join(work, "deploy.sh"), "-state", path.join(work, "state.json")], { cwd: work })
      const deployed = await fs.readFile(path.join(work, "deployed"), "utf8").catch(() => undefined)
      return { code: r.code, deployed }
    }
    // The state file a Go agent left: the document the Go registry served.
    const goState = await fs.readFile(path.join(FIXTURE, "expected", "project1.json"), "utf8")
    expect(await agentRun(goState)).toEqual({ code: 0, deployed: undefined })
    expect(await agentRun(undefined)).toEqual({ code: 0, deployed: `${JSON.parse(goState).Hash}\n` })
  })

  it("keeps the history (times from the Go states, author imported) and the version order", async () => {
    const h = await ssh(reg, ["history", "-name", "project1"])
    expect(h.code).toBe(0)
    const lines = h.stdout.trim().split("\n")
    expect(lines).toHaveLength(3)
    expect(lines.map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ["2026-12-01T11:21:49Z", "190a892a35009c71aa48fff3fa5dba1e446abe25c3464eac67ea2d46e3ddb729", "imported"],
      ["2026-12-01T11:21:48Z", "e993da28ba481dd5cc6b0141bd7a7e9025778732e4b0648237548bf6475f5c9a", "imported"],
      ["2026-12-01T11:21:46Z", "02e871c3327cffba2d15e49882e4ae9b129f85f15b13b771f834cca52821029b", "imported"]
    ])
    const c = await ssh(reg, ["showcomp", "-name", "code"])
    expect(c.stdout).toBe("2026-12-01T11:21:40Z   v01\n2026-12-01T11:21:41Z   v02\n2026-12-01T11:21:42Z   v03\n")
    // Rolling back works on imported states: web goes back to code v02.
    expect((await ssh(reg, ["rollback", "-name", "web"])).code).toBe(0)
    expect((await ssh(reg, ["showconf", "-name", "web"])).stdout).toMatch(/^code\s+v02\s/)
  })

  it("refuses a second import into the same directory, in one line", async () => {
    const r = await registry(["import", "-from", goDir, "-dir", dir])
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`deploy-registry: -dir ${dir} already holds a registry (state.db): import only into a new or empty directory\n`)
  })

  it("left the Go data directory exactly as it was", async () => {
    const r = await runProgram("diff", ["-r", path.join(FIXTURE, "data"), goDir])
    expect(r).toMatchObject({ code: 0, stdout: "" })
  })

  const otherFs = (() => {
    try {
      return statSync("/dev/shm").dev !== statSync(path.dirname(registryMain)).dev
    } catch {
      return false
    }
  })()
  it.skipIf(!otherFs)("copies (and verifies) the blobs when GO_DIR is on another filesystem", async () => {
    const source = await goCopy("/dev/shm")
    const into = path.join(await scratch("imported-copy-"), "registry")
    const r = await registry(["import", "-from", source, "-dir", into])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("blobs: 0 linked, 5 copied")
    expect((await registry(["verify", "-dir", into])).code).toBe(0)
  })
})

describe("deploy-registry on a Go data directory", () => {
  it("refuses to serve or verify it in one line, pointing at import (no stack trace, no SqliteError)", async () => {
    const goDir = await goCopy()
    for (const args of [["-addr", "127.0.0.1:0", "-dir", goDir, "-opauth", path.join(FIXTURE, "keys/operator.keys"), "-srvauth", path.join(FIXTURE, "keys/service.keys")], ["verify", "-dir", goDir]]) {
      const r = await registry(args)
      expect(r.code, args[0]).not.toBe(0)
      expect(r.stderr, args[0]).toBe(
        `deploy-registry: ${goDir}: this looks like a Go deploy-registry data directory; run deploy-registry import -from ${goDir} -dir NEW_DIR\n`
      )
    }
    expect(await runProgram("diff", ["-r", path.join(FIXTURE, "data"), goDir])).toMatchObject({ code: 0 })
  })

  it("any other unusable state.db is one line too, never a stack trace", async () => {
    const keys = ["-opauth", path.join(FIXTURE, "keys/operator.keys"), "-srvauth", path.join(FIXTURE, "keys/service.keys")]
    for (const [label, content, why] of [
      ["random bytes", Buffer.alloc(8192, 7), /state\.db is not a registry database \(neither SQLite nor a Go registry's bolt file\)$/],
      ["damaged SQLite", Buffer.from("SQLite format 3\u0000garbage garbage garbage"), /^deploy-registry: internal error: file is not a database$/]
    ] as const) {
      const d = await scratch("bad-db-")
      await fs.writeFile(path.join(d, "state.db"), content)
      for (const args of [["-addr", "127.0.0.1:0", "-dir", d, ...keys], ["verify", "-dir", d]]) {
        const r = await registry(args)
        expect(r.code, `${label} ${args[0]}`).toBe(1)
        expect(r.stderr.trim(), `${label} ${args[0]}`).toMatch(why)
        expect(r.stderr.trim().split("\n"), `${label} ${args[0]}`).toHaveLength(1)
      }
    }
  })

  it("lists import in -h; usage errors exit 2", async () => {
    const h = await registry(["-h"])
    expect(h.stdout).toContain("deploy-registry import -from GO_DIR -dir DIR")
    const u = await registry(["import", "-dir", "/tmp/x"])
    expect(u).toMatchObject({ code: 2, stderr: "deploy-registry: import needs -from GO_DIR (see deploy-registry -h)\n" })
  })
})
