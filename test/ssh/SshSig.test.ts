// SSHSIG against OpenSSH both ways: signatures we make verify with `ssh-keygen -Y verify`, signatures
// `ssh-keygen -Y sign` makes (from key files and from a key in ssh-agent) verify with ours; every key
// type; tampering, wrong namespace and hash algorithm are refused; allowed_signers options apply.
import { type ChildProcess, spawn } from "node:child_process"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { findSigner, parseAllowedSigners } from "../../src/ssh/AllowedSigners.js"
import { type SigningKey, sign } from "../../src/ssh/Signer.js"
import { armor, NAMESPACE, parseArmored, verify } from "../../src/ssh/SshSig.js"
import { runProgram, tempDir } from "../support/registry.js"

const TYPES = [["ed25519", []], ["ecdsa", ["-b", "256"]], ["ecdsa", ["-b", "384"]], ["ecdsa", ["-b", "521"]], ["rsa", ["-b", "3072"]]] as const
const names = TYPES.map(([t, b]) => `${t}${b[1] ?? ""}`)

let dir: string
let agent: ChildProcess | undefined
const sock = () => path.join(dir, "agent.sock")
const message = Buffer.from("deploy-tools configuration\nname: p1\n")

const keygen = async (args: ReadonlyArray<string>, input?: Buffer) => {
  const r = await runProgram("ssh-keygen", args, { ...(input ? { input } : {}), env: { ...process.env, SSH_AUTH_SOCK: sock() } })
  return r
}
const pub = async (name: string) => (await fs.readFile(path.join(dir, `${name}.pub`), "utf8")).trim()
const allowedFor = async (name: string, options = "") => `alice@example ${options}${options ? " " : ""}${await pub(name)}\n`

beforeAll(async () => {
  dir = await tempDir("sshsig-")
  for (const [i, [type, bits]] of TYPES.entries()) {
    const r = await keygen(["-q", "-t", type, ...bits, "-N", "", "-C", names[i]!, "-f", path.join(dir, names[i]!)])
    expect(r.code, r.stderr).toBe(0)
  }
  agent = spawn("ssh-agent", ["-D", "-a", sock()], { stdio: "ignore" })
  for (let i = 0; i < 100 && !(await fs.stat(sock()).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 50))
  for (const n of names) {
    const r = await runProgram("ssh-add", [path.join(dir, n)], { env: { ...process.env, SSH_AUTH_SOCK: sock() } })
    expect(r.code, r.stderr).toBe(0)
  }
}, 60_000)

afterAll(async () => {
  agent?.kill()
  if (dir) await fs.rm(dir, { recursive: true, force: true })
})

/** `ssh-keygen -Y verify` of `sig` over `message` against an allowed_signers file for key `name`. */
const opensshVerifies = async (name: string, sig: string, msg = message) => {
  const allowed = path.join(dir, `allowed-${name}`)
  await fs.writeFile(allowed, await allowedFor(name))
  const sigFile = path.join(dir, `ours-${name}.sig`)
  await fs.writeFile(sigFile, sig)
  const r = await keygen(["-Y", "verify", "-f", allowed, "-I", "alice@example", "-n", NAMESPACE, "-s", sigFile], msg)
  return r.code === 0
}

/** `ssh-keygen -Y sign` of `message` with the key file `key` (a .pub for the agent's key). */
const opensshSigns = async (key: string, namespace = NAMESPACE, extra: ReadonlyArray<string> = []) => {
  const file = path.join(dir, `msg-${path.basename(key)}-${namespace}`)
  await fs.writeFile(file, message)
  const r = await keygen(["-Y", "sign", "-f", key, "-n", namespace, ...extra, file])
  expect(r.code, r.stderr).toBe(0)
  return fs.readFile(`${file}.sig`, "utf8")
}

const ours = (key: SigningKey, msg = message) => Effect.runPromise(sign(key, msg))

describe("SSHSIG interop with ssh-keygen -Y", () => {
  it.each(names)("%s: ours verifies with ssh-keygen, ssh-keygen's with ours", async (name) => {
    const sig = await ours({ _tag: "File", path: path.join(dir, name) })
    expect(await opensshVerifies(name, sig)).toBe(true)
    expect(await opensshVerifies(name, sig, Buffer.from("something else"))).toBe(false)
    const theirs = await opensshSigns(path.join(dir, name))
    const v = verify(theirs, message)
    expect(v._tag).toBe("Valid")
    const signers = parseAllowedSigners(await allowedFor(name)).signers
    expect(v._tag === "Valid" && findSigner(signers, v.publicKey, NAMESPACE, new Date())).toMatchObject({ principals: ["alice@example"] })
  })

  it.each(names)("%s held in ssh-agent: ours verifies with ssh-keygen, ssh-keygen's with ours", async (name) => {
    const sig = await ours({ _tag: "Agent", socket: sock(), publicKeyFile: path.join(dir, `${name}.pub`) })
    expect(await opensshVerifies(name, sig)).toBe(true)
    expect(verify(await opensshSigns(path.join(dir, `${name}.pub`)), message)._tag).toBe("Valid")
  })

  it("refuses a tampered message, another namespace, another hash algorithm and a forged key", async () => {
    const theirs = await opensshSigns(path.join(dir, "ed25519"))
    expect(verify(theirs, Buffer.from("deploy-tools configuration\nname: p2\n"))).toEqual({ _tag: "Invalid", reason: "bad signature" })
    const other = await opensshSigns(path.join(dir, "ed25519"), "file")
    expect(verify(other, message)).toMatchObject({ _tag: "Invalid", reason: expect.stringMatching(/namespace "file"/) })
    expect(verify(other, message, "file")._tag).toBe("Valid")
    // sha256 is fine when the signature was made with it ...
    expect(verify(await opensshSigns(path.join(dir, "rsa3072"), NAMESPACE, ["-O", "hashalg=sha256"]), message)._tag).toBe("Valid")
    const parts = parseArmored(theirs)
    if (typeof parts === "string") throw new Error(parts)
    // ... but relabelling the hash, or naming one we do not take, is refused.
    expect(verify(armor({ ...parts, hashAlgorithm: "sha256" }), message)).toEqual({ _tag: "Invalid", reason: "bad signature" })
    expect(verify(armor({ ...parts, hashAlgorithm: "sha1" }), message)).toMatchObject({ _tag: "Invalid", reason: expect.stringMatching(/hash algorithm/) })
    // Another key claimed as the signer.
    const ecdsa = parseArmored(await opensshSigns(path.join(dir, "ecdsa256")))
    if (typeof ecdsa === "string") throw new Error(ecdsa)
    expect(verify(armor({ ...parts, publicKey: ecdsa.publicKey }), message)._tag).toBe("Invalid")
    expect(verify("not a signature", message)._tag).toBe("Invalid")
    expect(verify(theirs.replace("SIGNATURE-----\n", "SIGNATURE-----\nAAAA"), message)._tag).toBe("Invalid")
  })
})

describe("allowed_signers", () => {
  it("principals (quoted or not), namespaces=, valid-after=, valid-before=", async () => {
    const line = await pub("ed25519")
    const key = Buffer.from(line.split(" ")[1]!, "base64")
    const at = (t: string) => new Date(t)
    const file = (opts: string) => parseAllowedSigners(`# comment\n\n"alice,bob" ${opts} ${line}\n`)
    expect(file("").signers[0]).toMatchObject({ principals: ["alice", "bob"], line: 3 })
    expect(findSigner(file(`namespaces="deploy-*"`).signers, key, NAMESPACE, at("2026-01-01"))).toMatchObject({ line: 3 })
    expect(findSigner(file(`namespaces="git,file"`).signers, key, NAMESPACE, at("2026-01-01"))).toMatchObject({ untrusted: true })
    expect(findSigner(file(`namespaces="*,!deploy-tools"`).signers, key, NAMESPACE, at("2026-01-01"))).toMatchObject({ untrusted: true })
    const window = file(`valid-after="20260101",valid-before="20270101Z"`).signers
    expect(findSigner(window, key, NAMESPACE, at("2026-06-01T00:00:00Z"))).toMatchObject({ line: 3 })
    expect(findSigner(window, key, NAMESPACE, at("2027-01-01T00:00:00Z"))).toMatchObject({ untrusted: true, reason: expect.stringMatching(/expired/) })
    expect(findSigner(window, key, NAMESPACE, at("2025-06-01T00:00:00Z"))).toMatchObject({ untrusted: true })
    expect(findSigner(file("").signers, Buffer.from((await pub("ecdsa256")).split(" ")[1]!, "base64"), NAMESPACE, at("2026-01-01")))
      .toMatchObject({ untrusted: true, reason: expect.stringMatching(/not in the allowed signers/) })
    expect(file("cert-authority").problems).toEqual([{ line: 3, message: expect.stringMatching(/cert-authority/) }])
    expect(file(`valid-before="soon"`).problems).toHaveLength(1)
    expect(parseAllowedSigners(`alice ssh-ed25519 AAAA!!\n`).problems).toHaveLength(1)
  })
})
