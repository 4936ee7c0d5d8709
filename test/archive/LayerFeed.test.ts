import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { feedLayerCheck } from "../../src/archive/LayerFeed.js"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import { file, gz, tar } from "../support/tar.js"

/** `bytes` cut into pieces of `size`, each in memory of its own (as deployctl reads them). */
const pieces = (bytes: Buffer, size: number): Array<Buffer> => {
  const out: Array<Buffer> = []
  for (let i = 0; i < bytes.length; i += size) {
    const b = Buffer.allocUnsafeSlow(Math.min(size, bytes.length - i))
    bytes.copy(b, 0, i, i + b.length)
    out.push(b)
  }
  return out
}

const big = gz(tar(file("a", "hello"), file("b", randomBytes(3 * 1024 * 1024))))

describe("feedLayerCheck", () => {
  it.scoped("the chunks pushed are hashed and checked as the file would be, whatever the cut; the memory moves to the worker", () =>
    Effect.gen(function* () {
      for (const size of [1, 4096, 100_000, big.length]) {
        const bytes = size === 1 ? gz(tar(file("x", "tiny"), file("y"))) : big
        const feed = yield* feedLayerCheck("code@v1", { hash: true })
        for (const p of pieces(bytes, size)) {
          yield* feed.push(p)
          expect(p.length).toBe(0) // transferred, not copied
        }
        expect(yield* feed.end).toEqual({ entries: 2, bytes: bytes.length, hash: createHash("sha256").update(bytes).digest("hex") })
      }
    })
  )

  it.scoped("a refusal is known before the end: `failed` fails and further pushes fail", () =>
    Effect.gen(function* () {
      const feed = yield* feedLayerCheck("code@v1", { hash: true })
      const watcher = yield* Effect.fork(feed.failed)
      const [first, ...rest] = pieces(Buffer.alloc(8 * 1024 * 1024, "not an archive "), 1024 * 1024)
      yield* feed.push(first!)
      const exit = yield* Fiber.await(watcher)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("not gzip")
      const late = yield* Effect.exit(Effect.forEach(rest, feed.push, { discard: true }))
      expect(late).toEqual(Exit.fail(new LayerRefused({ layer: "code@v1", entry: "", reason: "not gzip (no gzip header)" })))
    })
  )

  it.scoped("a truncated file is refused at the end", () =>
    Effect.gen(function* () {
      const feed = yield* feedLayerCheck("code@v1")
      for (const p of pieces(big.subarray(0, big.length - 100), 65536)) yield* feed.push(p)
      const exit = yield* Effect.exit(feed.end)
      expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(/truncated|unexpected end/)
    })
  )
})
