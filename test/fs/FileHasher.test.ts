// The hashing worker reads back what the download wrote: the same digests as node:crypto, for several
// files at once, and a clear failure when the file is shorter than what was said to be written.
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { execFileSync } from "node:child_process"
import { hashFile, INLINE_MAX } from "../../src/fs/FileHasher.js"
import { repoRoot } from "../support/registry.js"

let dir: string
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "hasher-"))
})
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

describe("hashFile", () => {
  it("hashes a file as it is written, batch after batch, several files at once", async () => {
    const a = randomBytes(3 * 1024 * 1024 + 123) // more than the worker's 1 MiB read buffer
    const b = randomBytes(70_000)
    const fa = await fs.open(path.join(dir, "a"), "wx")
    const fb = await fs.open(path.join(dir, "b"), "wx")
    const ha = hashFile(path.join(dir, "a"))
    const hb = hashFile(path.join(dir, "b"))
    const he = hashFile(path.join(dir, "b")) // nothing of it "written": the empty digest
    let off = 0
    for (const n of [1, 1_000_000, 7, 2_000_000, a.length - 3_000_008]) {
      await fa.write(a, off, n, off)
      off += n
      ha.written(off)
      if (off < b.length) {
        await fb.write(b, 0, b.length, 0)
        hb.written(b.length)
      }
    }
    const [da, db, de] = await Promise.all([ha.digest(a.length), hb.digest(b.length), he.digest(0)])
    await fa.close()
    await fb.close()
    expect(da).toBe(sha(a))
    expect(db).toBe(sha(b))
    expect(de).toBe(sha(Buffer.alloc(0)))
  })

  it("fails when the file is shorter than what was said to be written, or missing", async () => {
    await fs.writeFile(path.join(dir, "short"), "abc")
    const h = hashFile(path.join(dir, "short"))
    h.written(3)
    await expect(h.digest(10)).rejects.toThrow(/hashing failed: the file ended at 3, expected 10 bytes/)
    await expect(hashFile(path.join(dir, "missing")).digest(1)).rejects.toThrow(/hashing failed: ENOENT/)
  })

  it("a finished or abandoned hash takes no more requests", async () => {
    await fs.writeFile(path.join(dir, "x"), "x")
    const h = hashFile(path.join(dir, "x"))
    expect(await h.digest(1)).toBe(sha(Buffer.from("x")))
    await expect(h.digest(1)).rejects.toThrow(/finished/)
    const g = hashFile(path.join(dir, "x"))
    g.abandon()
    await expect(g.digest(1)).rejects.toThrow(/finished/)
  })

  it("hands a hash to the worker when the file outgrows INLINE_MAX, also at digest", async () => {
    const a = randomBytes(INLINE_MAX + 1)
    await fs.writeFile(path.join(dir, "a"), a)
    const h = hashFile(path.join(dir, "a"))
    h.written(10)
    h.written(a.length)
    expect(await h.digest(a.length)).toBe(sha(a))
    expect(await hashFile(path.join(dir, "a")).digest(a.length)).toBe(sha(a))
    await expect(hashFile(path.join(dir, "a")).digest(a.length + 5)).rejects.toThrow(/hashing failed: the file ended at 262145, expected 262150 bytes/)
  })

  it("starts no worker for files up to INLINE_MAX (a worker costs ~30 ms of CPU to start)", async () => {
    // A process of its own, so no other test has started the worker; the BUILT module (npm run build first).
    const small = randomBytes(INLINE_MAX)
    const big = randomBytes(INLINE_MAX + 1)
    await fs.writeFile(path.join(dir, "small"), small)
    await fs.writeFile(path.join(dir, "big"), big)
    const child = `import { hashFile, workerStarted } from ${JSON.stringify(path.join(repoRoot, "dist/fs/FileHasher.js"))}
const at = (f) => process.argv[1] + "/" + f
const s = hashFile(at("small"))
s.written(${INLINE_MAX})
const small = await s.digest(${INLINE_MAX})
const before = workerStarted()
const big = await hashFile(at("big")).digest(${INLINE_MAX + 1})
console.log(JSON.stringify({ small, before, big, after: workerStarted() }))` // nothing else holds the process open while the digest is under way
    const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", child, dir], { encoding: "utf8" }))
    expect(out).toEqual({ small: sha(small), before: false, big: sha(big), after: true })
  })

  it("when the worker cannot start, written() does nothing and digest() fails in one line (a caller's write callback must not throw)", async () => {
    // A process of its own whose Worker constructor throws, as it does when a thread cannot be made.
    const big = randomBytes(INLINE_MAX + 1)
    await fs.writeFile(path.join(dir, "big"), big)
    const child = `import { createRequire, syncBuiltinESMExports } from "node:module"
createRequire(import.meta.url)("node:worker_threads").Worker = class { constructor() { throw new Error("no thread for you") } }
syncBuiltinESMExports()
const { hashFile } = await import(${JSON.stringify(path.join(repoRoot, "dist/fs/FileHasher.js"))})
const h = hashFile(process.argv[1] + "/big")
let written = "ok"
try { h.written(${INLINE_MAX + 1}) } catch (e) { written = e.message }
const digest = await h.digest(${INLINE_MAX + 1}).then(() => "resolved", (e) => e.message)
console.log(JSON.stringify({ written, digest }))`
    const out = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", child, dir], { encoding: "utf8" }))
    expect(out).toEqual({ written: "ok", digest: "hashing could not start: no thread for you" })
  })
})
