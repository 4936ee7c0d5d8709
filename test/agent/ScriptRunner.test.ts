// The script runner with real processes: exact environment, output in the log (fault 4), exit
// status in the error, and a process-group kill on interruption.
import { Duration, Effect, Exit, Fiber } from "effect"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { makeScriptRunner } from "../../src/agent/ScriptRunner.js"
import { tempDir } from "./support.js"

let dir: string
let lines: Array<string>
const log = {
  line: (level: string, m: string) => void lines.push(`${level} ${m}`),
  info: () => Effect.void,
  warn: () => Effect.void,
  error: () => Effect.void,
  debug: () => Effect.void
}
const runner = () => makeScriptRunner(log, Duration.millis(300))

beforeEach(async () => {
  dir = await tempDir("script-runner-")
  lines = []
})
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})

const script = async (body: string) => {
  const file = path.join(dir, "deploy.sh")
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe("ScriptRunner", () => {
  it("passes exactly the given environment and forwards stdout and stderr line by line", async () => {
    const file = await script(`env > "${dir}/env.txt"\necho out one\necho err one >&2\nprintf 'no newline'`)
    await Effect.runPromise(runner().run({ script: file, env: { NEWID: "abc", OLDROOT: "", PATH: "/usr/bin:/bin" }, configuration: "p", hash: "h" }))
    const env = (await fs.readFile(path.join(dir, "env.txt"), "utf8")).trim().split("\n").sort()
    // sh itself adds PWD (and may add SHLVL/_); everything else is ours.
    expect(env.filter((l) => !/^(PWD|SHLVL|_)=/.test(l))).toEqual(["NEWID=abc", "OLDROOT=", "PATH=/usr/bin:/bin"])
    expect(lines).toContain("info script stdout: out one")
    expect(lines).toContain("info script stderr: err one")
    expect(lines).toContain("info script stdout: no newline")
  })

  it("fails with the exit status, and with the reason when it cannot start", async () => {
    const file = await script("echo failing; exit 7")
    const exit = await Effect.runPromiseExit(runner().run({ script: file, env: {}, configuration: "project1", hash: "h1" }))
    expect(Exit.isFailure(exit)).toBe(true)
    const err = await Effect.runPromise(Effect.flip(runner().run({ script: file, env: {}, configuration: "project1", hash: "h1" })))
    expect(err.message).toBe("deploy script failed for configuration project1 (h1): exit status 7")
    expect(lines).toContain("info script stdout: failing")
    const missing = await Effect.runPromise(Effect.flip(runner().run({ script: path.join(dir, "nope.sh"), env: {}, configuration: "p", hash: "h" })))
    expect(missing.status).toContain("ENOENT")
  })

  it("does not wait for a daemon the script leaves behind", async () => {
    const file = await script(`sleep 30 &\necho $! > "${dir}/daemon.pid"\necho started`)
    await Effect.runPromise(runner().run({ script: file, env: {}, configuration: "p", hash: "h" }))
    const pid = Number(await fs.readFile(path.join(dir, "daemon.pid"), "utf8"))
    expect(alive(pid)).toBe(true) // a normal exit never kills what the script started
    process.kill(pid, "SIGKILL")
  })

  it("on interruption, SIGTERMs the process group, then SIGKILLs what ignores it", async () => {
    const file = await script(
      `trap 'echo got TERM > "${dir}/term"; exit 1' TERM\n(trap '' TERM; sleep 30) &\necho $! > "${dir}/child.pid"\necho ready > "${dir}/ready"\nwhile :; do sleep 0.05; done`
    )
    const fiber = Effect.runFork(runner().run({ script: file, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, configuration: "p", hash: "h" }))
    for (let i = 0; i < 400 && !existsSync(path.join(dir, "ready")); i++) await new Promise((r) => setTimeout(r, 10))
    const child = Number(await fs.readFile(path.join(dir, "child.pid"), "utf8"))
    expect(alive(child)).toBe(true)
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(await fs.readFile(path.join(dir, "term"), "utf8")).toBe("got TERM\n")
    // The child ignored SIGTERM; the group SIGKILL after the grace period got it.
    for (let i = 0; i < 200 && alive(child); i++) await new Promise((r) => setTimeout(r, 10))
    expect(alive(child)).toBe(false)
  })
})

describe("script output lines", () => {
  it("splits a line without newline into bounded pieces instead of holding it whole", async () => {
    const { MAX_LINE_CHARS } = await import("../../src/agent/ScriptRunner.js")
    const n = 5 * MAX_LINE_CHARS + 123
    const file = await script(`head -c ${n} /dev/zero | tr '\\0' a; echo; printf 'x\\r\\ny\\rz'`)
    await Effect.runPromise(runner().run({ script: file, env: { PATH: "/usr/bin:/bin" }, configuration: "p", hash: "h" }))
    const out = lines.filter((l) => l.startsWith("info script stdout: ")).map((l) => l.slice("info script stdout: ".length))
    for (const l of out) expect(l.length).toBeLessThanOrEqual(MAX_LINE_CHARS + " [line continues]".length)
    expect(out.slice(0, 5).every((l) => l.endsWith(" [line continues]"))).toBe(true)
    expect(out.map((l) => l.replace(" [line continues]", "")).slice(0, 6).join("").length).toBe(n)
    expect(out.slice(6)).toEqual(["x", "y", "z"])
  })
})

describe("a failing step's last lines and the health check's timeout", () => {
  it("keeps the last lines (bounded in count and length) in the failure", async () => {
    const { MAX_TAIL_LINES, MAX_TAIL_LINE_CHARS } = await import("../../src/domain/DeployOutcome.js")
    const file = await script(`i=0; while [ $i -lt 50 ]; do echo "line $i"; i=$((i+1)); done; head -c 5000 /dev/zero | tr '\\0' b; echo; echo "last" >&2; exit 2`)
    const err = await Effect.runPromise(Effect.flip(runner().run({ script: file, env: { PATH: "/usr/bin:/bin" }, configuration: "p", hash: "h", step: "check" })))
    expect(err.message).toBe("health check failed for configuration p (h): exit status 2")
    expect(err.step).toBe("check")
    expect(err.lines).toHaveLength(MAX_TAIL_LINES)
    expect(err.lines.at(-1)).toBe("last")
    expect(err.lines.at(-2)).toBe("b".repeat(MAX_TAIL_LINE_CHARS))
    expect(err.lines[0]).toBe(`line ${50 - MAX_TAIL_LINES + 2}`)
    expect(lines).toContain("info check stdout: line 0")
  })

  it("kills the whole process group past the timeout and fails as timed out", async () => {
    const file = await script(`sleep 30 &\necho $! > "${dir}/child.pid"\necho waiting\nwait`)
    const err = await Effect.runPromise(
      Effect.flip(runner().run({ script: file, env: { PATH: "/usr/bin:/bin" }, configuration: "p", hash: "h", step: "check", timeout: Duration.millis(300) }))
    )
    expect(err.status).toBe("timed out after 300ms")
    expect(err.lines).toEqual(["waiting"])
    const child = Number(await fs.readFile(path.join(dir, "child.pid"), "utf8"))
    for (let i = 0; i < 200 && alive(child); i++) await new Promise((r) => setTimeout(r, 10))
    expect(alive(child)).toBe(false)
  })
})
