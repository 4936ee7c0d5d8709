// Every algorithm the registry offers, tried with OpenSSH's `ssh` (the BUILT registry: `npm run build`
// first): each KEX, cipher, MAC and host key algorithm in both our offer and `ssh -Q`, one login each,
// so the offer can never again promise something that fails (diffie-hellman-group-exchange-sha256 did).
// Also the user key signature algorithms that EXT_INFO server-sig-algs advertises.
import { execFile, execFileSync } from "node:child_process"
import { appendFile, mkdir, readFile, rm } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CIPHERS, HOST_KEY, KEX, MACS } from "../../src/ssh/Algorithms.js"
import { ssh, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"

const run = promisify(execFile)
const supported = (what: string) => new Set(execFileSync("ssh", ["-Q", what], { encoding: "utf8" }).split("\n").filter(Boolean))

const started: Array<TestRegistry> = []
let reg: TestRegistry
let rsaKey: string
beforeAll(async () => {
  // The RSA user key of the server-sig-algs tests is trusted from the start (no restart).
  reg = await startRegistry({
    beforeStart: async ({ dir, keysDir }) => {
      rsaKey = path.join(keysDir, "rsa-user")
      await run("ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "rsa-user", "-f", rsaKey])
      await appendFile(path.join(dir, "operator.keys"), await readFile(`${rsaKey}.pub`, "utf8"))
    }
  })
  started.push(reg)
}, 60_000)
afterAll(async () => {
  for (const r of started) {
    await r.stop()
    await rm(r.dir, { recursive: true, force: true })
  }
})

const login = (r: TestRegistry, options: ReadonlyArray<string>, key?: string) =>
  ssh(r, ["components"], { extra: ["-T", ...options.flatMap((o) => ["-o", o])], ...(key ? { key } : {}) })

describe("every offered algorithm works with OpenSSH", () => {
  const kex = KEX.filter((a) => supported("kex").has(a))
  const ciphers = CIPHERS.filter((a) => supported("cipher").has(a))
  const macs = MACS.filter((a) => supported("mac").has(a))

  it("offers nothing broken: no group exchange, no SHA-1 KEX or host key algorithm", () => {
    expect(KEX.some((a) => a.startsWith("diffie-hellman-group-exchange"))).toBe(false)
    expect([...KEX, ...HOST_KEY].some((a) => /sha1|^ssh-rsa$|ssh-dss/.test(a))).toBe(false)
    expect(kex.length).toBeGreaterThanOrEqual(6)
  })

  it.each(kex)("KEX %s", async (a) => {
    const r = await login(reg, [`KexAlgorithms=${a}`])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  })

  it.each(ciphers)("cipher %s", async (a) => {
    const r = await login(reg, [`Ciphers=${a}`])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  })

  // A MAC is negotiated only with a non-AEAD cipher.
  it.each(macs)("MAC %s", async (a) => {
    const r = await login(reg, ["Ciphers=aes128-ctr", `MACs=${a}`])
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  })

  it("a group-exchange-only client is refused at the handshake, not after it", async () => {
    const r = await login(reg, ["LogLevel=INFO", "KexAlgorithms=diffie-hellman-group-exchange-sha256"])
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/no matching key exchange method/)
  })

  // Host keys: one registry per key type, its host_key made by ssh-keygen before the first start.
  const hostKeyTypes: ReadonlyArray<[string, ReadonlyArray<string>, ReadonlyArray<string>]> = [
    ["ed25519", ["-t", "ed25519"], ["ssh-ed25519"]],
    ["ecdsa-256", ["-t", "ecdsa", "-b", "256"], ["ecdsa-sha2-nistp256"]],
    ["ecdsa-384", ["-t", "ecdsa", "-b", "384"], ["ecdsa-sha2-nistp384"]],
    ["ecdsa-521", ["-t", "ecdsa", "-b", "521"], ["ecdsa-sha2-nistp521"]],
    ["rsa", ["-t", "rsa", "-b", "2048"], ["rsa-sha2-512", "rsa-sha2-256"]]
  ]
  it.each(hostKeyTypes)("host key %s: each of its algorithms, and never ssh-rsa", async (_name, keygen, algos) => {
    const dir = await tempDir("deploy-registry-hostkey-")
    await mkdir(dir, { recursive: true })
    await run("ssh-keygen", ["-q", ...keygen, "-N", "", "-f", path.join(dir, "host_key")])
    const r = await startRegistry({ dir })
    started.push(r)
    for (const a of algos.filter((x) => supported("key").has(x) || x.startsWith("rsa-sha2"))) {
      expect(HOST_KEY).toContain(a)
      const res = await login(r, [`HostKeyAlgorithms=${a}`])
      expect({ a, stderr: res.stderr, code: res.code }).toEqual({ a, stderr: "", code: 0 })
    }
    if (algos[0]!.startsWith("rsa")) {
      const sha1 = await login(r, ["LogLevel=INFO", "HostKeyAlgorithms=ssh-rsa"])
      expect(sha1.code).toBe(255)
      expect(sha1.stderr).toMatch(/no matching host key type/)
    }
  }, 60_000)
})

describe("user key signature algorithms (server-sig-algs)", () => {
  it.each(["rsa-sha2-512", "rsa-sha2-256"])("an RSA key limited to %s logs in", async (a) => {
    const r = await login(reg, [`PubkeyAcceptedAlgorithms=${a}`], rsaKey)
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
  })

  it("an RSA key limited to ssh-rsa (SHA-1) is refused", async () => {
    const r = await login(reg, ["PubkeyAcceptedAlgorithms=ssh-rsa"], rsaKey)
    expect(r.code).toBe(255)
    expect(r.stderr).toMatch(/Permission denied/)
  })

  // asyncssh checks that PK_OK names the algorithm it asked about (rsa-sha2-512), which ssh2 reported as ssh-rsa.
  const hasAsyncssh = (() => {
    try {
      execFileSync("/usr/bin/python3", ["-c", "import asyncssh"], { stdio: "ignore" })
      return true
    } catch {
      return false
    }
  })()
  it.skipIf(!hasAsyncssh)("asyncssh logs in with an RSA key (rsa-sha2-512, PK_OK echoes it)", async () => {
    const py = [
      "import sys, asyncio, asyncssh",
      "async def main():",
      "    async with asyncssh.connect('127.0.0.1', port=int(sys.argv[1]), username='op', client_keys=[sys.argv[2]], known_hosts=None, agent_path=None) as c:",
      "        r = await c.run('components')",
      "        sys.exit(r.exit_status)",
      "asyncio.run(main())"
    ].join("\n")
    const { code } = await new Promise<{ code: number | null }>((res) =>
      execFile("/usr/bin/python3", ["-W", "ignore", "-c", py, String(reg.port), rsaKey], (err) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0 }))
    )
    expect(code).toBe(0)
  })

  it("server-sig-algs lists exactly the accepted algorithms, comma-separated", async () => {
    const r = await ssh(reg, ["components"], { extra: ["-T", "-o", "LogLevel=DEBUG1"] })
    const m = /server-sig-algs=<([^>]*)>/.exec(r.stderr)
    expect(m?.[1]?.split(",")).toEqual(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256"])
  })
})
