import { Duration, Either } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startup, usage } from "../../src/agent/Flags.js"
import { tempDir } from "./support.js"

let dir: string
let key: string
const fp = "SHA256:" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"

beforeAll(async () => {
  dir = await tempDir("agent-flags-")
  key = path.join(dir, "id_ed25519")
  await promisify(execFile)("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key])
  await fs.writeFile(path.join(dir, "deploy.sh"), "#!/bin/sh\n", { mode: 0o755 })
})
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})

const ok = (argv: Array<string>) => {
  const r = startup(argv, dir)
  if (Either.isLeft(r)) throw new Error(r.left)
  if (r.right._tag !== "Run") throw new Error("help")
  return r.right
}
const bad = (argv: Array<string>) => {
  const r = startup(argv, dir)
  if (Either.isRight(r)) throw new Error("expected a usage error")
  return r.left
}

describe("agent flags", () => {
  it("has the original's defaults, resolved against the working directory", () => {
    const r = ok(["-name", "p1", "-fp", fp, "-key", key])
    expect(r.settings).toMatchObject({
      host: "localhost",
      port: 2022,
      name: "p1",
      fingerprint: fp,
      dir,
      script: path.join(dir, "deploy.sh"),
      state: path.join(dir, "state.json"),
      cleanOld: false,
      keepSuid: false,
      verbose: false
    })
    expect(Duration.toMillis(r.settings.poll)).toBe(30_000)
    expect(r.once).toBe(false)
  })

  it("accepts -name x, -name=x and --name x, and sha256: in lower case", () => {
    const r = ok(["--name", "p1", "-fp=" + fp.replace("SHA256:", "sha256:"), "-key=" + key, "-addr", "127.0.0.1:2200", "--poll=1m30s", "-cleanold", "-keep-suid", "-once", "-v", "-script", "", "-state", "/tmp/state.json", "-dir", "sub"])
    expect(r.settings).toMatchObject({ host: "127.0.0.1", port: 2200, fingerprint: fp, cleanOld: true, keepSuid: true, verbose: true, script: "", state: "/tmp/state.json", dir: path.join(dir, "sub") })
    expect(Duration.toMillis(r.settings.poll)).toBe(90_000)
    expect(r.once).toBe(true)
  })

  it("refuses missing or malformed flags with one line", () => {
    expect(bad(["-fp", fp, "-key", key])).toBe("-name is required")
    expect(bad(["-name", "p1", "-key", key])).toContain("-fp is required")
    expect(bad(["-name", "p1", "-fp", "SHA256:short", "-key", key])).toContain("malformed fingerprint")
    expect(bad(["-name", "p1", "-fp", fp, "-key", path.join(dir, "missing")])).toContain("cannot read")
    expect(bad(["-name", "p1", "-fp", fp, "-key", key + ".pub"])).toContain("cannot use")
    expect(bad(["-name", "p1", "-fp", fp, "-key", key, "-poll", "30"])).toContain("-poll")
    expect(bad(["-name", "a/b", "-fp", fp, "-key", key])).toContain("/")
    expect(bad(["-name", "p1", "-fp", fp, "-key", key, "-bogus"])).toBe("flag provided but not defined: -bogus")
    expect(bad(["-name", "p1", "-fp", fp, "-key", key, "extra"])).toContain("unexpected argument")
  })

  it("keeps the state file in -dir unless -state says otherwise (relative to the working directory)", () => {
    expect(ok(["-name", "p1", "-fp", fp, "-key", key, "-dir", "a1"]).settings.state).toBe(path.join(dir, "a1", "state.json"))
    expect(ok(["-name", "p1", "-fp", fp, "-key", key, "-dir", "a1", "-state", "s.json"]).settings.state).toBe(path.join(dir, "s.json"))
  })

  it("checks -script, -dir and -state at start-up, naming the flag", async () => {
    const base = ["-name", "p1", "-fp", fp, "-key", key]
    expect(bad([...base, "-script", "./missing.sh"])).toMatch(/^-script: .*missing\.sh does not exist/)
    await fs.writeFile(path.join(dir, "plain.sh"), "#!/bin/sh\n", { mode: 0o644 })
    expect(bad([...base, "-script", "./plain.sh"])).toMatch(/^-script: .*plain\.sh is not executable/)
    expect(bad([...base, "-script", "no-such-program-here"])).toMatch(/^-script: no-such-program-here is not an executable in PATH/)
    expect(ok([...base, "-script", "sh"]).settings.script).toBe("sh")
    expect(bad([...base, "-dir", "plain.sh/sub"])).toMatch(/^-dir: .*plain\.sh\/sub is not a writable directory \(ENOTDIR\)/)
    expect(bad([...base, "-state", "plain.sh/state.json"])).toMatch(/^-state: directory .*plain\.sh is not writable/)
    expect(bad([...base, "-state", "."])).toMatch(/^-state: .* is a directory/)
  })

  it("takes a hidden -jitter (5s by default; tests turn it off), not shown in -h", () => {
    expect(Duration.toMillis(ok(["-name", "p1", "-fp", fp, "-key", key]).settings.jitter)).toBe(5000)
    expect(Duration.toMillis(ok(["-jitter", "0", "-name", "p1", "-fp", fp, "-key", key]).settings.jitter)).toBe(0)
    expect(bad(["-jitter", "soon", "-name", "p1", "-fp", fp, "-key", key])).toBe('-jitter: invalid duration "soon" (e.g. 5s, 0)')
    expect(usage()).not.toContain("-jitter")
  })

  it("has help", () => {
    expect(startup(["-h"], dir)).toEqual(Either.right({ _tag: "Help" }))
    expect(usage()).toContain('-poll string\n\tregistry poll interval')
  })
})

describe("health check flags", () => {
  it("takes -check (checked at start-up like -script), -check-timeout (60s) and -retry-failed (off)", async () => {
    const base = ["-name", "p1", "-fp", fp, "-key", key]
    const plain = ok(base).settings
    expect(plain.check).toBe("")
    expect(Duration.toMillis(plain.checkTimeout)).toBe(60_000)
    expect(plain.retryFailed).toBeUndefined()
    await fs.writeFile(path.join(dir, "check.sh"), "#!/bin/sh\n", { mode: 0o755 })
    const set = ok([...base, "-check", "./check.sh", "-check-timeout", "5s", "-retry-failed", "10m"]).settings
    expect(set.check).toBe(path.join(dir, "check.sh"))
    expect(Duration.toMillis(set.checkTimeout)).toBe(5000)
    expect(Duration.toMillis(set.retryFailed!)).toBe(600_000)
    expect(bad([...base, "-check", "./nope.sh"])).toMatch(/^-check: .*nope\.sh does not exist$/)
    expect(bad([...base, "-check-timeout", "0"])).toBe('-check-timeout: invalid duration "0" (e.g. 60s, 2m)')
    expect(bad([...base, "-retry-failed", "later"])).toBe('-retry-failed: invalid duration "later" (e.g. 10m, 1h)')
  })

  it("-trust reads an allowed_signers file (relative to the working directory); -trust-min needs it", async () => {
    const base = ["-name", "p1", "-fp", fp, "-key", key]
    expect(ok(base).settings.trust).toBeUndefined()
    await fs.writeFile(path.join(dir, "allowed"), `ops ${(await fs.readFile(`${key}.pub`, "utf8")).trim()}\n`)
    expect(ok([...base, "-trust", "allowed"]).settings.trust).toMatchObject({ file: path.join(dir, "allowed"), min: 1, signers: [{ principals: ["ops"] }] })
    expect(bad([...base, "-trust-min", "2"])).toBe("-trust-min needs -trust FILE")
    expect(bad([...base, "-trust", "allowed", "-trust-min", "2"])).toMatch(/lists only 1 distinct key/)
    expect(bad([...base, "-trust", "missing"])).toMatch(/^-trust: cannot read .*missing \(ENOENT\)$/)
  })
})
