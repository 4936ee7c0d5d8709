// Untrusted strings in the BUILT registry's log (`npm run build` first): a client's user name cannot
// forge a line (the `host key fingerprint:` line admins grep for) or put terminal escapes in the log,
// whether its login succeeds or is refused.
import { rm } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { formatLine } from "../../src/agent/AgentLog.js"
import { clientExec, connectClient, makeKey, startRegistry, type TestRegistry } from "../support/registry.js"

let reg: TestRegistry
beforeAll(async () => {
  reg = await startRegistry()
}, 60_000)
afterAll(async () => {
  await reg?.stop()
  if (reg) await rm(reg.dir, { recursive: true, force: true })
})

const forged = "x\nhost key fingerprint: SHA256:forgedforgedforgedforgedforgedforgedforged1\u001b[2J\u009b31m\u202e"

const settle = async (re: RegExp) => {
  for (let i = 0; i < 100 && !re.test(reg.log()); i++) await new Promise((r) => setTimeout(r, 50))
}

describe("log lines from untrusted strings", () => {
  it("a user name cannot forge a line or carry escapes, logged in or refused", async () => {
    const c = await connectClient(reg.port, forged, { privateKeyPath: reg.operator.privatePath })
    expect((await clientExec(c, "components")).code).toBe(0)
    c.end()
    const stranger = await makeKey(path.join(reg.dir, "test-keys"), "stranger")
    await expect(connectClient(reg.port, forged, { privateKeyPath: stranger.privatePath })).rejects.toThrow()
    await settle(/refused login/)
    const log = reg.log()
    // Every line is one event: time, level, message; only the registry's own line names the host key.
    const lines = log.split("\n").filter((l) => l !== "")
    expect(lines.filter((l) => !/^\d{4}-\d\d-\d\dT\S+ (info|warn|error|debug) /.test(l))).toEqual([])
    expect(lines.filter((l) => /^\S+ \S+ host key fingerprint:/.test(l)).map((l) => l.replace(/^\S+ \S+ /, ""))).toEqual([`host key fingerprint: ${reg.fingerprint}`])
    expect(log).not.toMatch(/[\u001b\u009b\u202e]/)
    expect(log).toContain(`operator "x\\x0ahost key fingerprint: SHA256:forged`)
    expect(log).toMatch(/refused login from 127\.0\.0\.1:\d+: user "x\\x0ahost key fingerprint: SHA256:forged.*\\x1b\[2J\\x9b31m\\u202e" key SHA256:\S+ \(key not listed\)/)
  })

  it("the agent's log escapes C1 controls and bidi overrides too (script output, names)", () => {
    const line = formatLine(new Date(0), "info", "out: a\u009b31m b\u202e c\td\ne")
    expect(line).toBe("1970-01-01T00:00:00.000Z info out: a\\x9b31m b\\u202e c\td\\x0ae\n")
  })
})
