import { Effect } from "effect"
import { execFile } from "node:child_process"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { agentAt, connectFields, loadKey, resolve } from "../../src/ssh/ClientAuth.js"

const run = promisify(execFile)
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "clientauth-"))
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "plain")])
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "s3cret", "-f", path.join(dir, "locked")])
  await run("ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "s3cret", "-f", path.join(dir, "locked-pem")])
  await writeFile(path.join(dir, "junk"), "not a key\n")
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const failure = <A, E extends { message: string }>(e: Effect.Effect<A, E>) => Effect.runPromise(Effect.flip(e))

describe("ClientAuth", () => {
  it("loads an unencrypted key", async () => {
    const auth = await Effect.runPromise(loadKey(path.join(dir, "plain")))
    expect(auth._tag).toBe("Key")
    expect("privateKey" in connectFields(auth)).toBe(true)
  })

  it("refuses passphrase-protected keys (OpenSSH and PEM formats) with advice", async () => {
    for (const name of ["locked", "locked-pem"]) {
      const e = await failure(loadKey(path.join(dir, name)))
      expect(e.message).toContain("passphrase")
      expect(e.message).toContain("ssh-add")
    }
  })

  it("unreadable, missing and malformed key files each get one clear line", async () => {
    expect((await failure(loadKey(path.join(dir, "missing")))).message).toMatch(/^cannot read private key .*missing: .*ENOENT/)
    expect((await failure(loadKey(path.join(dir, "junk")))).message).toContain("is not a usable private key")
    if (process.getuid?.() !== 0) {
      await chmod(path.join(dir, "plain"), 0o000)
      expect((await failure(loadKey(path.join(dir, "plain")))).message).toContain("EACCES")
      await chmod(path.join(dir, "plain"), 0o600)
    }
  })

  it("without -key uses the agent socket; no socket or a non-socket is a clear error", async () => {
    expect((await failure(resolve({ agentSocket: undefined }))).message).toContain("SSH_AUTH_SOCK is not set")
    expect((await failure(agentAt(path.join(dir, "nosock")))).message).toContain("is ssh-agent running?")
    expect((await failure(agentAt(path.join(dir, "junk")))).message).toContain("is not a socket")
    const sock = path.join(dir, "agent.sock")
    const server = net.createServer().listen(sock)
    await new Promise((r) => server.once("listening", r))
    try {
      const auth = await Effect.runPromise(resolve({ keyFile: undefined, agentSocket: sock }))
      expect(connectFields(auth)).toEqual({ agent: sock })
      // -key wins over the agent
      const k = await Effect.runPromise(resolve({ keyFile: path.join(dir, "plain"), agentSocket: sock }))
      expect(k._tag).toBe("Key")
    } finally {
      server.close()
    }
  })
})
