// authorized_keys options enforced by the BUILT registry (`npm run build` first) with sshd's semantics,
// tried with OpenSSH's `ssh` and `sftp`: from=, expiry-time=, restrict, no-pty, command=; an option the
// registry does not understand stops it at start with one line naming file, line and option.
import { rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { KeyPair } from "../support/keys.js"
import { makeKey, registryMain, runProgram, sftp, ssh, startRegistry, type TestRegistry } from "../support/registry.js"

let reg: TestRegistry
const k: Record<string, KeyPair> = {}
const lines: Record<string, string> = {
  fromOther: `from="10.9.9.9"`,
  fromNegated: `from="!127.0.0.1,*"`,
  fromCidr: `from="10.0.0.0/8,127.0.0.0/8"`,
  fromGlob: `from="192.168.*,127.0.0.?"`,
  expired: `expiry-time="20200101"`,
  notExpired: `expiry-time="29991231235959Z"`,
  restricted: `restrict,command="help"`,
  noPty: `no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc`,
  sftpOnly: `command="internal-sftp"`
}

const login = (name: string, args: ReadonlyArray<string> = ["components"], extra: ReadonlyArray<string> = ["-T"]) =>
  ssh(reg, args, { key: k[name]!.privatePath, user: "op", extra: [...extra] })

const logged = async (re: RegExp) => {
  for (let i = 0; i < 100 && !re.test(reg.log()); i++) await new Promise((r) => setTimeout(r, 50))
  return reg.log()
}

beforeAll(async () => {
  reg = await startRegistry({
    beforeStart: async ({ dir, keysDir, operator }) => {
      for (const name of Object.keys(lines)) k[name] = await makeKey(keysDir, name)
      await writeFile(
        path.join(dir, "operator.keys"),
        [operator.publicLine, ...Object.entries(lines).map(([name, opts]) => `${opts} ${k[name]!.publicLine}`)].join("\n") + "\n"
      )
    }
  })
}, 60_000)
afterAll(async () => {
  await reg?.stop()
  if (reg) await rm(reg.dir, { recursive: true, force: true })
})

describe("from=", () => {
  it("refuses a client address the key does not allow, and logs why", async () => {
    expect((await login("fromOther")).code).toBe(255)
    expect(await logged(/from= of .*operator\.keys:2 does not allow "127\.0\.0\.1"/)).toMatch(/refused login from 127\.0\.0\.1:\d+: user "op"/)
  })
  it("a negated match refuses whatever else matches", async () => {
    expect((await login("fromNegated")).code).toBe(255)
  })
  it("lets in an address in a CIDR network or matching a pattern", async () => {
    expect((await login("fromCidr")).code).toBe(0)
    expect((await login("fromGlob")).code).toBe(0)
  })
})

describe("expiry-time=", () => {
  it("refuses a key after its expiry time, accepts it before", async () => {
    expect((await login("expired")).code).toBe(255)
    expect(await logged(/key expired at/)).toMatch(/key expired at 2020-01-01/)
    expect((await login("notExpired")).code).toBe(0)
  })
})

describe("restrict, no-pty and command=", () => {
  it("runs the forced command instead of the client's", async () => {
    const r = await login("restricted", ["configurations"])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/addver/)
    expect(await logged(/forced command for "op" instead of "configurations"/)).toBeTruthy()
  })
  it("a shell request runs the forced command too", async () => {
    const r = await login("restricted", [])
    expect(r.stdout).toMatch(/addver/)
    expect(r.code).toBe(0)
  })
  // OpenSSH's ssh gives up when a pty it was told to get (-tt) is refused: sshd answers no-pty the same way.
  it("restrict refuses the pty, where a plain key gets one", async () => {
    const r = await login("restricted", [], ["-tt"])
    expect(r.stderr).toMatch(/PTY allocation request failed/)
    expect(r.code).toBe(255)
    const plain = await ssh(reg, ["components"], { extra: ["-tt"] })
    expect(plain.stderr).not.toMatch(/PTY allocation request failed/)
    expect(plain.code).toBe(0)
  })
  it("a forced command replaces the SFTP subsystem", async () => {
    const r = await sftp(reg, "op@127.0.0.1", { key: k.restricted!.privatePath, batch: true, input: "ls\n" })
    expect(r.code).not.toBe(0)
  })
  it("no-pty refuses the pty; without one the key works, and the forwarding options are accepted", async () => {
    const r = await login("noPty", ["components"], ["-tt"])
    expect(r.stderr).toMatch(/PTY allocation request failed/)
    expect(r.code).toBe(255)
    expect((await login("noPty")).code).toBe(0)
  })
  it("command=\"internal-sftp\" allows SFTP and nothing else", async () => {
    expect((await sftp(reg, "op@127.0.0.1", { key: k.sftpOnly!.privatePath, batch: true, input: "ls\n" })).code).toBe(0)
    expect((await login("sftpOnly")).code).not.toBe(0)
  })
})

describe("options the registry does not understand", () => {
  it.each([
    [`environment="A=b"`, `option "environment" is not supported by deploy-registry`],
    [`no-touch-required`, `option "no-touch-required" is not supported by deploy-registry`],
    [`from="10.0.0.1/8"`, `option from: "10.0.0.1/8" has bits set beyond its mask length`],
    [`expiry-time="tomorrow"`, `option expiry-time: "tomorrow" is not YYYYMMDD[HHMM[SS]][Z]`],
    [`principals="a"`, `option principals is only allowed with cert-authority`],
    [`configurations="a,,b"`, `option configurations="a,,b" has an empty entry`],
    // An operator key changes everything anyway: a scope there would promise what nothing enforces.
    [`configurations="p1"`, `option configurations is only for agent keys (-srvauth)`]
  ])("refuse to start on %s, naming file, line and option in one line", async (opts, message) => {
    const file = path.join(reg.dir, "bad.keys")
    await writeFile(file, `${reg.operator.publicLine}\n# a comment\n${opts} ${k.noPty!.publicLine}\n`)
    const r = await runProgram(process.execPath, [registryMain, "-addr", "127.0.0.1:0", "-dir", reg.dir, "-opauth", file,
      "-srvauth", path.join(reg.dir, "service.keys")])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toBe(`deploy-registry: -opauth keys file ${file}:3: ${message}; refusing to start\n`)
  })
})
