// Node 20 deadlocks for good in `keyObject.export({ format: "jwk" })` of a key made by generateKeyPairSync:
// the export holds the key's mutex while it allocates, a garbage collection runs the finished KeyGenJob's
// destructor, which takes the same mutex. Our patch of ssh2's curve25519 key exchange (scripts/patch-deps.mjs)
// once did exactly that, once per handshake on both ends: a registry or client could hang mid-handshake
// (seen in the benchmark's load generator). The JWK is now made inside the generation (publicKeyEncoding),
// while the job is still referenced.
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { describe, expect, it } from "vitest"

const kexSource = () => readFileSync(createRequire(import.meta.url).resolve("ssh2/lib/protocol/kex.js"), "utf8")

/** Runs `iterations` x25519 generations in a child under GC pressure; resolves with its exit, or "hung". */
const churn = (generate: string, iterations: number, limitMs: number): Promise<number | "hung"> =>
  new Promise((resolve) => {
    const script = `const { generateKeyPairSync } = require("node:crypto")
const junk = []
for (let i = 0; i < ${iterations}; i++) {
  ${generate}
  junk.push({ i }) // objects that live a little: the collections the deadlock needs
  if (junk.length > 1000) junk.length = 0
}`
    const child = spawn(process.execPath, ["-e", script], { stdio: "ignore" })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      resolve("hung")
    }, limitMs)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve(code ?? -1)
    })
  })

describe("ssh2's curve25519 key exchange on this Node", () => {
  it("makes the raw public key inside the key generation, never by exporting a generated key to JWK", () => {
    const src = kexSource()
    expect(src).toContain("generateKeyPairSync('x25519', { publicKeyEncoding: { format: 'jwk' } })")
    expect(src).toContain("Buffer.from(this._keys.publicKey.x, 'base64url')")
    expect(src).not.toMatch(/publicKey\.export\(\{\s*format:\s*'jwk'/)
  })

  // The old shape, `generateKeyPairSync("x25519").publicKey.export({ format: "jwk" })`, hung this loop within
  // 2 s in 3 of 3 runs here (after 0, 15,000 and 30,000 iterations).
  it("that generation survives 30,000 rounds under garbage-collection pressure", async () => {
    const generate = `const k = generateKeyPairSync("x25519", { publicKeyEncoding: { format: "jwk" } }); Buffer.from(k.publicKey.x, "base64url")`
    expect(await churn(generate, 30_000, 50_000)).toBe(0)
  }, 60_000)
})
