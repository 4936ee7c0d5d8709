import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { feedLayerCheck, type LayerFeed } from "../../src/archive/LayerFeed.js"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import { file, gz, tar } from "../support/tar.js"

/** Pushes `bytes` in pieces of `size`, each copied into a buffer the feed lends (as deployctl reads them). */
const feedAll = (feed: LayerFeed, bytes: Buffer, size: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < bytes.length; i += size) {
      const buf = yield* feed.buffer
      expect(buf.length).toBeGreaterThanOrEqual(Math.min(size, bytes.length - i))
      const n = bytes.copy(buf, 0, i, i + size)
      yield* feed.push(buf.subarray(0, n))
      expect(buf.length).toBe(0) // moved to the worker, not copied
    }
  })

const big = gz(tar(file("a", "hello"), file("b", randomBytes(3 * 1024 * 1024))))

describe("feedLayerCheck", () => {
  it.scoped("the chunks pushed are hashed and checked as the file would be, whatever the cut; each buffer moves to the worker", () =>
    Effect.gen(function* () {
      for (const size of [1, 4096, 100_000, big.length]) {
        const bytes = size === 1 ? gz(tar(file("x", "tiny"), file("y"))) : big
        const feed = yield* feedLayerCheck("code@v1", { hash: true, chunkSize: size })
        yield* feedAll(feed, bytes, size)
        expect(yield* feed.end).toEqual({ entries: 2, bytes: bytes.length, hash: createHash("sha256").update(bytes).digest("hex") })
      }
    })
  )

  it.scoped("a buffer comes back only once the worker is done with it: 48 MiB through the ring, each buffer scribbled on as soon as it is lent", () =>
    Effect.gen(function* () {
      // Incompressible data: the worker is slower than the copying here, so an early return would be overwritten.
      const huge = gz(tar(file("h", randomBytes(48 * 1024 * 1024))))
      const size = 64 * 1024
      const feed = yield* feedLayerCheck("code@v1", { hash: true, chunkSize: size })
      for (let i = 0; i < huge.length; i += size) {
        const buf = yield* feed.buffer
        buf.fill(0x55) // a wrong byte in a buffer the worker still reads would change the hash or the verdict
        const n = huge.copy(buf, 0, i, i + size)
        yield* feed.push(buf.subarray(0, n))
      }
      expect(yield* feed.end).toEqual({ entries: 1, bytes: huge.length, hash: createHash("sha256").update(huge).digest("hex") })
    })
  )

  it.scoped("a refusal is known before the end: `failed` fails and further pushes fail", () =>
    Effect.gen(function* () {
      const feed = yield* feedLayerCheck("code@v1", { hash: true, chunkSize: 1024 * 1024 })
      const watcher = yield* Effect.fork(feed.failed)
      const junk = Buffer.alloc(8 * 1024 * 1024, "not an archive ")
      yield* feedAll(feed, junk.subarray(0, 1024 * 1024), 1024 * 1024)
      const exit = yield* Fiber.await(watcher)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("not gzip")
      const late = yield* Effect.exit(feedAll(feed, junk.subarray(1024 * 1024), 1024 * 1024))
      expect(late).toEqual(Exit.fail(new LayerRefused({ layer: "code@v1", entry: "", reason: "not gzip (no gzip header)" })))
    })
  )

  it.scoped("a truncated file is refused at the end", () =>
    Effect.gen(function* () {
      const feed = yield* feedLayerCheck("code@v1", { chunkSize: 65536 })
      yield* feedAll(feed, big.subarray(0, big.length - 100), 65536)
      const exit = yield* Effect.exit(feed.end)
      expect(Exit.isFailure(exit) && String(exit.cause)).toMatch(/truncated|unexpected end/)
    })
  )
})
