// `npm run demo` (scripts/demo.ts) must tell the whole story successfully with the built programs:
// exit 0, every deploy checked by the script itself, and nothing left behind.
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot } from "./support/registry.js"

// If the test times out, the demo is told to stop: it kills its registry and agent and cleans up.
let demo: ChildProcess | undefined
afterAll(() => {
  if (demo && demo.exitCode === null) demo.kill("SIGTERM")
})

const runDemo = () =>
  new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = (demo = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "scripts/demo.ts"), "--no-jitter"], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"]
    }))
    let out = ""
    child.stdout.on("data", (b: Buffer) => (out += b.toString()))
    child.stderr.on("data", (b: Buffer) => (out += b.toString()))
    child.once("error", reject)
    child.once("exit", (code) => resolve({ code, out }))
  })

describe("demo", () => {
  it("runs every step, deploys, rolls back, and cleans up", async () => {
    const { code, out } = await runDemo()
    if (code !== 0) console.log(out)
    expect(code).toBe(0)
    expect(out).toMatch(/demo finished: every step worked/)
    // the three deploys the script verified, in order: v1, v2, back to v1
    const deployed = [...out.matchAll(/\$ cat agent\/current\/\*.*\n((?: {4}.*\n)+)/g)].map((m) => m[1]!.replace(/ {4}/g, "").trim())
    expect(deployed).toEqual(["config v1\nprogram body v1", "config v2\nprogram body v1", "config v1\nprogram body v1"])
    expect(out).toMatch(/agent exited with 0, registry exited with 0/)
    const work = /demo directory: (\S+)/.exec(out)?.[1]
    expect(work).toBeDefined()
    expect(existsSync(work!)).toBe(false)
  }, 150_000) // several program starts and three agent polls (each up to 1 s; --no-jitter turns the agent's jitter off)
})
