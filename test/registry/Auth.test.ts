import { Effect } from "effect"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { AGENT_USER, type AuthAttempt, loadKeysFile, makeAuth } from "../../src/registry/Auth.js"
import { parseAuthorizedKeys } from "../../src/ssh/AuthorizedKeys.js"
import { tempDir } from "../support/keys.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const pair = (comment: string) => {
  const kp = generateEd25519(comment)
  const priv = ssh2.utils.parseKey(kp.private)
  if (priv instanceof Error) throw priv
  return { publicLine: kp.public, priv, data: priv.getPublicSSH() }
}
const operator = pair("alice")
const agent = pair("web1")
const stranger = pair("mallory")
const auth = makeAuth(parseAuthorizedKeys(operator.publicLine).keys, parseAuthorizedKeys(agent.publicLine).keys)
const check = (a: AuthAttempt) => Effect.runSync(auth.check(a))

const signed = (k: ReturnType<typeof pair>, user: string, signer = k): AuthAttempt => {
  const blob = randomBytes(64)
  return { user, algo: "ssh-ed25519", keyData: k.data, signed: { blob, signature: signer.priv.sign(blob), hashAlgo: undefined } }
}

describe("Auth.check", () => {
  it("accepts an operator key with a valid signature and names the principal", () => {
    const d = check(signed(operator, "alice"))
    expect(d._tag).toBe("Accept")
    if (d._tag !== "Accept") return
    expect(d.role).toBe("operator")
    expect(d.principal.user).toBe("alice")
    expect(d.principal.comment).toBe("alice")
    expect(d.principal.fingerprint).toMatch(/^SHA256:/)
  })

  it("answers the query phase (no signature) with KeyListed only for listed keys", () => {
    expect(check({ user: "alice", algo: "ssh-ed25519", keyData: operator.data })._tag).toBe("KeyListed")
    expect(check({ user: "alice", algo: "ssh-ed25519", keyData: stranger.data })._tag).toBe("Reject")
  })

  it("refuses a listed key whose signature was made by another key (public key alone is not enough)", () => {
    expect(check(signed(operator, "alice", stranger))._tag).toBe("Reject")
    const bogus = signed(operator, "alice")
    expect(check({ ...bogus, signed: { ...bogus.signed!, signature: Buffer.alloc(64) } })._tag).toBe("Reject")
    expect(check({ ...bogus, signed: { ...bogus.signed!, signature: Buffer.alloc(0) } })._tag).toBe("Reject")
  })

  it("checks deploy-agent against the service keys and everyone else against the operator keys", () => {
    const a = check(signed(agent, AGENT_USER))
    expect(a._tag === "Accept" && a.role).toBe("agent")
    expect(check(signed(agent, "alice"))._tag).toBe("Reject")
    expect(check(signed(operator, AGENT_USER))._tag).toBe("Reject")
    expect(check(signed(stranger, "root"))._tag).toBe("Reject")
  })

  it("verifies RSA (per requested hash) and ECDSA signatures with the keys parsed once at load", () => {
    const make = (type: "rsa" | "ecdsa", comment: string) => {
      const kp = ssh2.utils.generateKeyPairSync(type, type === "rsa" ? { bits: 2048, comment } : { bits: 256, comment })
      const priv = ssh2.utils.parseKey(kp.private)
      if (priv instanceof Error) throw priv
      return { publicLine: kp.public, priv, data: priv.getPublicSSH() }
    }
    const rsa = make("rsa", "bob")
    const ec = make("ecdsa", "carol")
    const a = makeAuth(parseAuthorizedKeys(`${rsa.publicLine}\n${ec.publicLine}\n`).keys, [])
    const run = (x: AuthAttempt) => Effect.runSync(a.check(x))._tag
    const blob = randomBytes(64)
    const rsaAttempt = (algo: string, hashAlgo: string | undefined, signHash: string) =>
      run({ user: "bob", algo, keyData: rsa.data, signed: { blob, signature: rsa.priv.sign(blob, signHash), hashAlgo } })
    expect(rsaAttempt("rsa-sha2-256", "sha256", "sha256")).toBe("Accept")
    expect(rsaAttempt("rsa-sha2-512", "sha512", "sha512")).toBe("Accept")
    // ssh-rsa is SHA-1: refused as OpenSSH 8.8+ refuses it, however valid the signature.
    expect(rsaAttempt("ssh-rsa", undefined, "sha1")).toBe("Reject")
    expect(run({ user: "bob", algo: "ssh-rsa", keyData: rsa.data })).toBe("Reject") // the query phase too
    expect(rsaAttempt("rsa-sha2-256", "sha256", "sha512")).toBe("Reject")
    const ecAttempt = (signature: Buffer) =>
      run({ user: "carol", algo: "ecdsa-sha2-nistp256", keyData: ec.data, signed: { blob, signature, hashAlgo: undefined } })
    expect(ecAttempt(ec.priv.sign(blob) as Buffer)).toBe("Accept")
    expect(ecAttempt(ec.priv.sign(randomBytes(64)) as Buffer)).toBe("Reject")
    // The same key object serves many logins.
    expect(rsaAttempt("rsa-sha2-256", "sha256", "sha256")).toBe("Accept")
  })

  it("refuses a key offered under another algorithm name", () => {
    expect(check({ ...signed(operator, "alice"), algo: "ssh-rsa" })._tag).toBe("Reject")
  })
})

describe("loadKeysFile", () => {
  let dir: string
  beforeAll(async () => {
    dir = await tempDir("authfile-")
  })
  afterAll(() => fs.rm(dir, { recursive: true, force: true }))

  it("loads keys and reports ignored lines", async () => {
    const f = path.join(dir, "ok.keys")
    await fs.writeFile(f, `# ops\nnot a key\n${operator.publicLine}\n`)
    const r = await Effect.runPromise(loadKeysFile(f, "-opauth"))
    expect(r.keys).toHaveLength(1)
    expect(r.warnings).toEqual([`${f}:2: unknown key type "a", line ignored`])
  })

  it("refuses a file without keys, naming it in one line", async () => {
    const f = path.join(dir, "empty.keys")
    await fs.writeFile(f, "# nobody yet\n")
    const e = await Effect.runPromise(Effect.flip(loadKeysFile(f, "-srvauth")))
    expect(e.message).toBe(`-srvauth keys file ${f} has no keys; refusing to start`)
  })

  it("refuses a missing file", async () => {
    const f = path.join(dir, "missing.keys")
    const e = await Effect.runPromise(Effect.flip(loadKeysFile(f, "-opauth")))
    expect(e.message).toBe(`cannot read -opauth keys file ${f}: ENOENT`)
  })
})

describe("Auth.check with certificates (ssh-keygen -s)", () => {
  it("refuses host certificates and answers the query phase with each reason", async () => {
    const d = await tempDir("authcert-")
    try {
      const kg = (...args: Array<string>) => promisify(execFile)("ssh-keygen", ["-q", ...args])
      await kg("-t", "ed25519", "-N", "", "-f", path.join(d, "ca"))
      await kg("-t", "ed25519", "-N", "", "-f", path.join(d, "user"))
      const caLine = (await fs.readFile(path.join(d, "ca.pub"), "utf8")).trim()
      const certOf = async (args: Array<string>) => {
        await kg("-s", path.join(d, "ca"), "-I", "t", ...args, path.join(d, "user.pub"))
        const [algo, b64] = (await fs.readFile(path.join(d, "user-cert.pub"), "utf8")).trim().split(" ")
        return { algo: algo!, keyData: Buffer.from(b64!, "base64") }
      }
      const a = makeAuth(parseAuthorizedKeys(`cert-authority ${caLine}\n`).keys, [], undefined, () => new Date())
      const run = (c: { algo: string; keyData: Buffer }, user = "alice") => Effect.runSync(a.check({ user, ...c, address: "127.0.0.1" }))
      expect(run(await certOf(["-n", "alice", "-V", "-5m:+1h"]))).toEqual({ _tag: "KeyListed" })
      expect(run(await certOf(["-h", "-n", "alice", "-V", "-5m:+1h"]))).toMatchObject({ _tag: "Reject", reason: expect.stringMatching(/is not a user certificate/) })
      const valid = await certOf(["-n", "alice", "-V", "-5m:+1h"])
      // A tampered certificate (principal changed after signing) fails the CA signature.
      const tampered = Buffer.from(valid.keyData.toString("latin1").replace("alice", "mally"), "latin1")
      expect(run({ ...valid, keyData: tampered }, "mally")).toMatchObject({ _tag: "Reject", reason: expect.stringMatching(/bad CA signature/) })
      expect(run({ ...valid, algo: "ssh-rsa-cert-v01@openssh.com" })).toMatchObject({ _tag: "Reject" })
    } finally {
      await fs.rm(d, { recursive: true, force: true })
    }
  })
})
