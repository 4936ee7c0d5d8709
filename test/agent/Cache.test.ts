// The cache stores a download arriving in batches (runs of reads) with one writev each.
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { makeCache } from "../../src/agent/Cache.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

describe("Cache.store", () => {
  it("writes batches of pieces in order and verifies the whole", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"))
    dirs.push(dir)
    const pieces = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 977))
    const whole = Buffer.concat(pieces)
    // Uneven batches, as parallelRead yields them: whatever reads had arrived.
    const batches = [pieces.slice(0, 1), pieces.slice(1, 17), pieces.slice(17, 18), pieces.slice(18)]
    const cache = makeCache(dir)
    await Effect.runPromise(cache.store(sha(whole), (sink) => Effect.forEach(batches, sink, { discard: true })))
    // Buffer.equals, not toEqual: vitest's deep equality walks 800 KB byte by byte (13 s of the file's 14).
    expect((await readFile(cache.path(sha(whole)))).equals(whole)).toBe(true)
  })

  it("refuses bytes that do not match the hash and leaves no file behind", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "cache-"))
    dirs.push(dir)
    const cache = makeCache(dir)
    const exit = await Effect.runPromiseExit(cache.store(sha(Buffer.from("expected")), (sink) => sink([Buffer.from("other")])))
    expect(exit._tag).toBe("Failure")
    expect(String(exit)).toContain("HashMismatch")
    expect(await readdir(path.join(dir, "cache"))).toEqual([])
  })
})
