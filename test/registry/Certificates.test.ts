// OpenSSH user certificates against the BUILT registry (`npm run build` first), made by `ssh-keygen -s`
// and used by OpenSSH's `ssh`: sshd's rules for cert-authority lines, each refusal logged in one line
// saying why, and a CA key never logging in as a plain key.
import { execFile } from "node:child_process"
import { readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeKey, sftp, ssh, startRegistry, type TestRegistry } from "../support/registry.js"
import type { KeyPair } from "../support/keys.js"

const run = promisify(execFile)

let reg: TestRegistry
let ca: KeyPair
let teamCa: KeyPair
let strangerCa: KeyPair
let rsaCa: string
let ecdsaCa: string
let dir: string

/** A key of another type, made by ssh-keygen (`<dir>/<name>`, `.pub`). */
const keyOfType = async (name: string, args: ReadonlyArray<string>) => {
  const p = path.join(dir, name)
  await run("ssh-keygen", ["-q", ...args, "-N", "", "-C", name, "-f", p])
  return p
}

/** A new key `name` with a certificate `name-cert.pub` signed by `by` (ssh-keygen -s). */
const certified = async (name: string, by: KeyPair, args: ReadonlyArray<string>) => {
  const k = await makeKey(dir, name)
  await run("ssh-keygen", ["-q", "-s", by.privatePath, "-I", `id-${name}`, ...args, k.publicPath])
  return k
}

/** `ssh` with the key (and its -cert.pub beside it, which ssh loads by itself). */
const login = (key: KeyPair, user: string, command = "components") => ssh(reg, [command], { key: key.privatePath, user, extra: ["-T"] })

const logged = async (re: RegExp) => {
  for (let i = 0; i < 100 && !re.test(reg.log()); i++) await new Promise((r) => setTimeout(r, 50))
  return reg.log()
}

beforeAll(async () => {
  reg = await startRegistry({
    beforeStart: async (r) => {
      dir = r.keysDir
      ca = await makeKey(dir, "ca", "the-ca")
      teamCa = await makeKey(dir, "team-ca", "team-ca")
      strangerCa = await makeKey(dir, "stranger-ca", "stranger-ca")
      rsaCa = await keyOfType("rsa-ca", ["-t", "rsa", "-b", "2048"])
      ecdsaCa = await keyOfType("ecdsa-ca", ["-t", "ecdsa", "-b", "384"])
      const pub = (p: string) => readFile(`${p}.pub`, "utf8").then((t) => t.trim())
      await writeFile(
        path.join(r.dir, "operator.keys"),
        `${r.operator.publicLine}\ncert-authority ${ca.publicLine}\ncert-authority,principals="deployers,ops" ${teamCa.publicLine}\n` +
          `cert-authority ${await pub(rsaCa)}\nCert-Authority ${await pub(ecdsaCa)}\n`
      )
      await writeFile(path.join(r.dir, "service.keys"), `${r.agent.publicLine}\ncert-authority ${ca.publicLine}\n`)
    }
  })
}, 60_000)
afterAll(async () => {
  if (process.env.SHOW_LOG) console.log(reg?.log())
  await reg?.stop()
  if (reg) await rm(reg.dir, { recursive: true, force: true })
})

describe("OpenSSH user certificates", () => {
  it("lets in a certificate whose principals include the user name, and records who", async () => {
    const k = await certified("alice", ca, ["-n", "alice", "-V", "-5m:+1h"])
    const r = await login(k, "alice")
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(await logged(/operator "alice" .* logged in/)).toMatch(/operator "alice" SHA256:\S+ "cert \\"id-alice\\" serial 0 CA SHA256:\S+ the-ca" logged in/)
  })

  it.each([
    ["ecdsa-256 key, RSA CA (rsa-sha2-512)", ["-t", "ecdsa", "-b", "256"], () => rsaCa],
    ["ecdsa-521 key, RSA CA", ["-t", "ecdsa", "-b", "521"], () => rsaCa],
    ["RSA key (rsa-sha2-512-cert-v01), ECDSA CA", ["-t", "rsa", "-b", "2048"], () => ecdsaCa],
    ["ed25519 key, ECDSA CA", ["-t", "ed25519"], () => ecdsaCa]
  ] as const)("certificates of every key type and CA type: %s", async (name, keygen, caPath) => {
    const key = await keyOfType(name.replace(/\W+/g, "-"), keygen)
    await run("ssh-keygen", ["-q", "-s", caPath(), "-I", "typed", "-n", "erin", "-V", "-5m:+1h", `${key}.pub`])
    const r = await ssh(reg, ["components"], { key, user: "erin", extra: ["-T"] })
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  })

  it("refuses an RSA certificate signed with ssh-rsa-cert-v01 (SHA-1)", async () => {
    const key = await keyOfType("rsa-sha1", ["-t", "rsa", "-b", "2048"])
    await run("ssh-keygen", ["-q", "-s", ca.privatePath, "-I", "sha1", "-n", "erin", "-V", "-5m:+1h", `${key}.pub`])
    const r = await ssh(reg, ["components"], { key, user: "erin", extra: ["-T", "-o", "PubkeyAcceptedAlgorithms=ssh-rsa-cert-v01@openssh.com"] })
    expect(r.code).toBe(255)
  })

  it("accepts principals= on the CA line instead of the user name", async () => {
    const k = await certified("team", teamCa, ["-n", "ops", "-V", "-5m:+1h"])
    expect((await login(k, "whoever")).code).toBe(0)
    const other = await certified("team2", teamCa, ["-n", "whoever", "-V", "-5m:+1h"])
    expect((await login(other, "whoever")).code).toBe(255)
    expect(await logged(/none of its principals "whoever" is in principals=/)).toMatch(/none of its principals "whoever" is in principals=/)
  })

  it.each([
    ["expired", ["-n", "bob", "-V", "20200101:20200102"], "bob", /certificate "id-expired" serial 0 expired at 2020-01-02/],
    ["notyet", ["-n", "bob", "-V", "+1d:+2d"], "bob", /certificate "id-notyet" serial 0 is not yet valid/],
    ["wrongprincipal", ["-n", "carol", "-V", "-5m:+1h"], "bob", /user "bob" is not among its principals "carol"/],
    ["sourceaddr", ["-n", "bob", "-V", "-5m:+1h", "-O", "source-address=10.9.9.0/24"], "bob", /source-address "10.9.9.0\/24" does not allow "127.0.0.1"/],
    ["noprincipals", ["-V", "-5m:+1h"], "bob", /certificate "id-noprincipals" serial 0 has no principals/],
    ["verifyreq", ["-n", "bob", "-V", "-5m:+1h", "-O", "verify-required"], "bob", /unsupported critical option "verify-required"/]
  ])("refuses a certificate: %s, and logs why in one line", async (name, args, user, why) => {
    const k = await certified(name, ca, args)
    const r = await login(k, user)
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/Permission denied/)
    const log = await logged(why)
    const line = log.split("\n").find((l) => why.test(l))
    expect(line).toMatch(/^\S+ warn refused login from 127\.0\.0\.1:\d+: user /)
  })

  it("refuses a certificate signed by a CA that is not listed", async () => {
    const k = await certified("unknownca", strangerCa, ["-n", "bob", "-V", "-5m:+1h"])
    expect((await login(k, "bob")).code).toBe(255)
    expect(await logged(/id-unknownca.*unknown CA/)).toMatch(new RegExp(`certificate "id-unknownca" serial 0: unknown CA ${strangerCa.fingerprint.replace(/[+/]/g, "\\$&")}`))
  })

  it("never lets a CA key log in as a plain key", async () => {
    expect((await login(ca, "alice")).code).toBe(255)
    expect((await login(ca, "deploy-agent", "x")).code).toBe(255)
    expect(await logged(/key is a CA/)).toMatch(/key is a CA \(cert-authority at .*operator\.keys:2\)/)
  })

  it("enforces source-address when it matches, and force-command runs instead of the client's command", async () => {
    const k = await certified("forced", ca, ["-n", "dave", "-V", "-5m:+1h", "-O", "source-address=127.0.0.0/8,::1", "-O", "force-command=help"])
    const r = await login(k, "dave", "components")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/addver/) // help's command list, not components' (empty) output
  })

  it("serves the agent view to a certificate for deploy-agent from a CA in the service keys", async () => {
    const k = await certified("web1", ca, ["-n", "deploy-agent", "-V", "-5m:+1h"])
    const r = await sftp(reg, "deploy-agent@127.0.0.1", { key: k.privatePath, batch: true, input: "ls /configs\n" })
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(await logged(/agent "deploy-agent" .*id-web1/)).toMatch(/agent "deploy-agent" SHA256:\S+ "cert \\"id-web1\\"/)
  })
})
