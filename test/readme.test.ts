// The README's two set-up commands are tested as written: `npm run registry` starts the embedded
// default and the lines it prints work; `npm test` is what CI runs (.ci/run), so it is covered there.
// The registry is started as the README says, but on a free port and a scratch -dir, so the test
// never meets the developer's own `npm run registry` (README: both run side by side).
import { execFile, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot } from "./support/registry.js"

const run = promisify(execFile)
const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8")

const setupBlock = (): Array<string> => {
  const m = /## Set up[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)
  return (m?.[1] ?? "").split("\n").map((l) => l.replace(/#.*$/, "").trim()).filter((l) => l !== "")
}

describe("README", () => {
  const scratch: Array<string> = []
  afterAll(async () => {
    for (const d of scratch) await rm(d, { recursive: true, force: true })
  })

  it("gives exactly two set-up commands: start the registry, run the tests", () => {
    expect(setupBlock()).toEqual(["npm run registry", "npm test"])
  })

  it("no test or script listens on a fixed port (tests run beside the developer's registry)", () => {
    const offenders: Array<string> = []
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name)
        if (e.isDirectory()) walk(p)
        else if (/\.(ts|mjs|js)$/.test(e.name)) {
          const text = readFileSync(p, "utf8")
          // listen(<fixed port>), a server Layer on a fixed port, `npm run registry` without -addr (2022)
          for (const re of [/\.listen\(\s*[1-9]\d*/g, /\bSshServerLive\(\{[^}]*port:\s*[1-9]/g, /\["run", "registry"\]/g]) {
            for (const m of text.matchAll(re)) offenders.push(`${path.relative(repoRoot, p)}: ${m[0]}`)
          }
        }
      }
    }
    for (const d of ["test", "scripts", "bench"]) walk(path.join(repoRoot, d))
    expect(offenders).toEqual([])
  })

  it("`npm run registry` starts the embedded default, and the commands it prints work", async () => {
    // As a newcomer runs it, from the repository root via npm, except for a free port and a scratch data directory.
    const data = await mkdtemp(path.join(os.tmpdir(), "readme-registry-"))
    scratch.push(data)
    const child = spawn("npm", ["run", "registry", "--", "-addr", "127.0.0.1:0", "-dir", data], {
      cwd: repoRoot,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (b: Buffer) => (out += b.toString()))
    child.stderr.on("data", (b: Buffer) => (out += b.toString()))
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    try {
      const deadline = Date.now() + 60_000
      while (!out.includes("dev registry ready") && Date.now() < deadline) {
        if (child.exitCode !== null) break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(out, out).toContain("dev registry ready")
      expect(out).toMatch(/trusting operator key SHA256:\S+/)
      expect(out).toMatch(/trusting agent key SHA256:\S+/)
      const fp = /host key fingerprint: (SHA256:\S+)/.exec(out)![1]!

      // The printed ssh line, made non-interactive: a fresh known_hosts that learns the key, then the fingerprint checked.
      const sshLine = /^\s*(ssh -p \d+ .*help)$/m.exec(out)![1]!.split(/\s+/)
      const home = await mkdtemp(path.join(os.tmpdir(), "readme-"))
      scratch.push(home)
      const kh = path.join(home, "known_hosts")
      const ssh = await run(
        sshLine[0]!,
        ["-o", `UserKnownHostsFile=${kh}`, "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", ...sshLine.slice(1)],
        { cwd: repoRoot }
      )
      expect(ssh.stdout).toContain("addver")
      const seen = await run("ssh-keygen", ["-lf", kh])
      expect(seen.stdout).toContain(fp)

      // The printed export + deployctl lines, with the built deployctl standing in for the one on PATH.
      const exp = /export DEPLOYCTL_ADDR=(\S+) DEPLOYCTL_FINGERPRINT=(\S+)/.exec(out)!
      expect(exp[2]).toBe(fp)
      const ctlLine = /^\s*deployctl (.*components)$/m.exec(out)![1]!.split(/\s+/)
      const ctl = await run(process.execPath, [path.join(repoRoot, "dist/ctl/main.js"), ...ctlLine], {
        cwd: repoRoot,
        env: { ...process.env, HOME: home, DEPLOYCTL_ADDR: exp[1], DEPLOYCTL_FINGERPRINT: exp[2] }
      })
      expect(ctl.stderr).toBe("")
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, "SIGINT")
    }
    await exited
    // Ctrl-C reaches the registry through npm; it stops accepting and says so.
    expect(out).toMatch(/stopp|shut/i)
  })
})
