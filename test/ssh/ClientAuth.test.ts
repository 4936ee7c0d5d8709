import { Effect } from "effect"
import { execFile } from "node:child_process"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { agentAt, agentKey, connectFields, loadKey, resolve } from "../../src/ssh/ClientAuth.js"
import { copyFile, mkdir } from "node:fs/promises"

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

  it("key precedence: flag > environment > agent > ~/.ssh/id_ed25519, id_ecdsa, id_rsa", async () => {
    const home = path.join(dir, "home")
    await mkdir(path.join(home, ".ssh"), { recursive: true })
    await copyFile(path.join(dir, "plain"), path.join(home, ".ssh", "id_rsa"))
    await copyFile(path.join(dir, "plain"), path.join(home, ".ssh", "id_ecdsa"))
    const pick = (o: Parameters<typeof resolve>[0]) => Effect.runPromise(resolve({ home, defaultKeys: true, ...o }))
    expect(await pick({})).toMatchObject({ _tag: "Key", path: path.join(home, ".ssh", "id_ecdsa"), source: "default" })
    expect(await pick({ envKey: path.join(dir, "plain") })).toMatchObject({ path: path.join(dir, "plain"), source: "DEPLOYCTL_KEY" })
    expect(await pick({ envKey: path.join(dir, "junk"), keyFile: path.join(dir, "plain") })).toMatchObject({ source: "-key" })
    const sock = path.join(dir, "agent2.sock")
    const server = net.createServer().listen(sock)
    await new Promise((r) => server.once("listening", r))
    try {
      expect(await pick({ agentSocket: sock })).toEqual({ _tag: "Agent", socket: sock })
      expect(await pick({ agentSocket: sock, envKey: path.join(dir, "plain") })).toMatchObject({ _tag: "Key" })
    } finally {
      server.close()
    }
  })

  it("deploy-agent's key: -key as given, else ~/.ssh in ssh's order, else ./id_ecdsa (the original's default)", async () => {
    const home = path.join(dir, "agent-home")
    const cwd = path.join(dir, "agent-cwd")
    await mkdir(path.join(home, ".ssh"), { recursive: true })
    await mkdir(cwd, { recursive: true })
    await copyFile(path.join(dir, "plain"), path.join(cwd, "id_ecdsa"))
    const r1 = agentKey({ cwd, home })
    expect("error" in r1 ? r1.error : r1.description).toMatch(/^key .*agent-cwd\/id_ecdsa \(SHA256:\S+, the original's default \.\/id_ecdsa\)$/)
    await copyFile(path.join(dir, "plain"), path.join(home, ".ssh", "id_ed25519"))
    const r2 = agentKey({ cwd, home })
    expect("error" in r2 ? r2.error : r2.path).toBe(path.join(home, ".ssh", "id_ed25519"))
    const r3 = agentKey({ cwd, home, keyFlag: "id_ecdsa" })
    expect("error" in r3 ? r3.error : r3.path).toBe(path.join(cwd, "id_ecdsa"))
    const r4 = agentKey({ cwd: dir, home: path.join(dir, "nohome") })
    expect("error" in r4 && r4.error).toMatch(/^-key: no key given and none of .* exists$/)
  })
})
