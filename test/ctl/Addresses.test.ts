// deployctl and deploy-from-docker (BUILT: `npm run build` first) with several registry addresses:
// two registries sharing one host key (test/support/replicas.ts). They try the addresses in order and
// move past one that is down (killed with kill -9), from -addr, $DEPLOYCTL_ADDR and deployctl.toml alike.
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { gzipSync } from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "../support/keys.js"
import { repoRoot, ssh, startRegistry, type TestRegistry } from "../support/registry.js"
import { addrList, startSibling } from "../support/replicas.js"
import { classicSave, file, tarOf } from "../docker/fixtures.js"
import { ctlMain } from "./harness.js"

const dfdMain = path.join(repoRoot, "dist/docker/main.js")

let a: TestRegistry
let b: TestRegistry
let work: string

beforeAll(async () => {
  a = await startRegistry()
  b = await startSibling(a)
  work = await tempDir("ctl-addr-")
}, 60_000)
afterAll(async () => {
  for (const r of [a, b]) {
    await r?.stop("SIGKILL")
    if (r) await fs.rm(r.dir, { recursive: true, force: true })
  }
  if (work) await fs.rm(work, { recursive: true, force: true })
})

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

const spawnProgram = (main: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, input?: Buffer): Promise<Result> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { env: { PATH: process.env.PATH, HOME: work, USER: "operator", ...env }, stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (x: Buffer) => (stdout += x.toString()))
    child.stderr.on("data", (x: Buffer) => (stderr += x.toString()))
    child.stdin.on("error", () => {})
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(input ?? "")
  })

const ctl = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
  spawnProgram(ctlMain, ["-fp", a.fingerprint, "-key", a.operator.privatePath, ...args], env)

const configurations = async (reg: TestRegistry) => (await ssh(reg, ["configurations"])).stdout

describe("several -addr addresses", () => {
  it("deployctl uses the first that answers, in order; a host key refusal does not move on", async () => {
    const layer = path.join(work, "l.tar.gz")
    await fs.writeFile(layer, gzipSync(tarOf([file("a", "1\n")])))
    // Both up: the first one gets the command.
    const first = await ctl(["-addr", addrList(a, b), "addver", "-name", "code", "-version", "v1", "-file", layer])
    expect(first.stderr).toBe("")
    expect(first.code).toBe(0)
    expect((await ssh(a, ["components"])).stdout).toBe("code\n")
    expect((await ssh(b, ["components"])).stdout).toBe("")
    // The other way round: b.
    expect((await ctl(["-addr", addrList(b, a), "addver", "-name", "code", "-version", "v1", "-file", layer])).code).toBe(0)
    expect((await ssh(b, ["components"])).stdout).toBe("code\n")
    // Another registry's key at the first address: refused there, not skipped.
    const stranger = await startRegistry()
    try {
      const r = await ctl(["-addr", addrList(stranger, a), "components"])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/host key mismatch for 127\.0\.0\.1:\d+/)
    } finally {
      await stranger.stop("SIGKILL")
      await fs.rm(stranger.dir, { recursive: true, force: true })
    }
  }, 90_000)

  it("with the first registry killed, deployctl (-addr, $DEPLOYCTL_ADDR, deployctl.toml) and deploy-from-docker reach the second", async () => {
    await a.stop("SIGKILL")
    const both = addrList(a, b)
    const flag = await ctl(["-addr", both, "addconf", "-name", "c1", "-layer", "code:v1"])
    expect(flag.stderr).toBe("")
    expect(flag.code).toBe(0)
    expect((await ctl(["addconf", "-name", "c2", "-layer", "code:v1"], { DEPLOYCTL_ADDR: both })).code).toBe(0)
    const conf = path.join(work, "xdg")
    await fs.mkdir(path.join(conf, "deploy-tools"), { recursive: true })
    await fs.writeFile(path.join(conf, "deploy-tools", "deployctl.toml"), `default = "prod"\n[registry.prod]\naddr = "${both}"\n`)
    expect((await ctl(["addconf", "-name", "c3", "-layer", "code:v1"], { XDG_CONFIG_HOME: conf })).code).toBe(0)
    expect(await configurations(b)).toBe("c1\nc2\nc3\n")

    const image = classicSave({ ref: "demo/app:1", layers: [tarOf([file("app", "v1\n")])] })
    const imported = await spawnProgram(dfdMain, ["-addr", both, "-fp", a.fingerprint, "-key", a.operator.privatePath], {}, image)
    expect(imported.stderr).toBe("")
    expect(imported.code).toBe(0)
    expect(await configurations(b)).toBe("c1\nc2\nc3\ndemo.app.1\n")

    // Every address down: one line naming each.
    await b.stop("SIGKILL")
    const none = await ctl(["-addr", both, "components"])
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^deployctl: no registry address answered: cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED \S+; cannot connect to 127\.0\.0\.1:\d+: /)
  }, 90_000)
})
