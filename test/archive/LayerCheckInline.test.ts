// The check of a small layer on the calling thread (checkSmallLayer, checkLayerBytes) against the
// worker's (checkLayerInWorker, feedLayerCheck): the same verdict for every archive of a hostile
// corpus, no worker started for any of them, and a small bomb handed to a worker after the budget.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { gzipSync } from "node:zlib"
import { checkLayer, checkLayerInWorker, checkSmallLayer, checkWorkersStarted, INLINE_TAR_BUDGET } from "../../src/archive/LayerCheck.js"
import { checkLayerBytes } from "../../src/archive/LayerFeed.js"
import { INLINE_MAX } from "../../src/fs/FileHasher.js"
import { corrupt, dir, eof, file, gnuLong, gz, header, hardlink, pax, symlink, tar, withLayerFile } from "../support/tar.js"


const good = gz(tar(dir("d/"), file("d/a", "hello"), symlink("d/s", "a"), hardlink("d/h", "d/a")))
const plain = tar(file("a", "x"))

/** Small layers an agent refuses, one per rule family, and a few it accepts. */
const corpus: ReadonlyArray<readonly [string, Buffer]> = [
  ["good", good],
  ["no entries", gz(eof())],
  ["empty file", Buffer.alloc(0)],
  ["plain tar", plain],
  ["zstd", Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00, 0x00, 0x00])],
  ["double gzip", gz(gzipSync(plain))],
  ["two members", Buffer.concat([gz(plain), gz(plain)])],
  ["data after the gzip stream", Buffer.concat([good, Buffer.from("x")])],
  ["zero padding after the gzip stream", Buffer.concat([good, Buffer.alloc(1000)])],
  ["truncated gzip", good.subarray(0, good.length - 20)],
  ["no trailer", good.subarray(0, good.length - 3)],
  ["bad CRC", corrupt(good, good.length - 8)],
  ["bad length", corrupt(good, good.length - 2)],
  ["flipped deflate byte", corrupt(good, 20)],
  ["truncated tar", gz(tar(file("a", "hello")).subarray(0, 700))],
  ["data after the end marker", gz(Buffer.concat([tar(file("a", "x")), Buffer.from("junk")]))],
  ["../ path", gz(tar(file("a/../../escape", "x")))],
  ["../ hard link", gz(tar(hardlink("h", "../x")))],
  ["PAX path with a newline", gz(tar(pax([["path", "a\nb"]]), file("x")))],
  ["global PAX path", gz(tar(pax([["path", "evil"]], "g"), file("x")))],
  ["two PAX headers", gz(tar(pax([["comment", "a"]]), pax([["comment", "b"]]), file("x")))],
  ["GNU long name and PAX path disagree", gz(tar(gnuLong("L", "long/one"), pax([["path", "other"]]), file("x")))],
  ["sparse", gz(tar(header({ name: "s", type: "S" })))],
  ["a directory with data", gz(tar(header({ name: "d/", type: "5", size: 3 }), Buffer.alloc(512)))],
  ["bad header checksum", gz(tar(file("a", "x"), corrupt(header({ name: "b" }), 148)))],
  ["path too long", gz(tar(pax([["path", "p/".repeat(2100)]]), file("x")))]
]

/** Zeros past the inline budget: enough to be handed on, not so many that inflating them costs seconds. */
const BOMB = 4 * INLINE_TAR_BUDGET

/** An outcome, comparable across the two paths. */
const outcome = (e: Effect.Effect<unknown, unknown>) => Effect.runPromise(Effect.exit(e))

describe("a small layer is checked on the calling thread", () => {
  it("the same verdict as the worker for every archive of the corpus, and no worker starts", async () => {
    const seen = new Set<string>()
    for (const [name, bytes] of corpus) {
      expect(bytes.length, name).toBeLessThanOrEqual(INLINE_MAX)
      await withLayerFile(bytes, async (p) => {
        const before = checkWorkersStarted()
        const here = await outcome(checkSmallLayer(p, "code@v1", { hash: true }))
        const fromBytes = await outcome(checkLayerBytes(bytes, "code@v1", { hash: true }))
        const viaCheckLayer = await outcome(checkLayer(p, "code@v1", { hash: true }))
        expect(checkWorkersStarted(), name).toBe(before)
        const worker = await outcome(checkLayerInWorker(p, "code@v1", { hash: true }))
        expect(checkWorkersStarted(), name).toBe(before + 1)
        expect(here, name).toEqual(worker)
        expect(fromBytes, name).toEqual(worker)
        expect(viaCheckLayer, name).toEqual(worker)
        seen.add(Exit.isSuccess(worker) ? "ok" : String(worker.cause))
      })
    }
    expect(seen.size).toBeGreaterThan(corpus.length - 4) // nearly every case is its own verdict
  })

  it("the worker's message when the file cannot be read", async () => {
    const gone = "/nonexistent/layer.tar.gz"
    expect(await outcome(checkSmallLayer(gone, "code@v1"))).toEqual(await outcome(checkLayerInWorker(gone, "code@v1")))
  })

  it("a small bomb goes on to a worker once its tar outgrows the budget, with the same verdict", async () => {
    // Zeros gzip ~1000:1: a small file, but four times the tar a thread that serves others may inflate.
    const zeros = gz(tar(file("zeros", Buffer.alloc(BOMB))))
    const bombs: ReadonlyArray<readonly [string, Buffer]> = [
      ["bomb", zeros],
      ["bomb with a bad CRC", corrupt(zeros, zeros.length - 8)],
      ["bomb with data after its end", gz(Buffer.concat([tar(file("zeros", Buffer.alloc(BOMB))), Buffer.from("junk")]))]
    ]
    for (const [name, bytes] of bombs) {
      expect(bytes.length, name).toBeLessThanOrEqual(INLINE_MAX)
      await withLayerFile(bytes, async (p) => {
        expect(await Effect.runPromise(checkSmallLayer(p, "l")), name).toBeUndefined()
        const before = checkWorkersStarted()
        const viaCheckLayer = await outcome(checkLayer(p, "l", { hash: true }))
        const fromBytes = await outcome(checkLayerBytes(bytes, "l", { hash: true }))
        expect(checkWorkersStarted(), name).toBe(before + 2)
        const worker = await outcome(checkLayerInWorker(p, "l", { hash: true }))
        expect(viaCheckLayer, name).toEqual(worker)
        expect(fromBytes, name).toEqual(worker)
      })
    }
    const ok = await withLayerFile(zeros, (p) => Effect.runPromise(checkLayer(p, "l", { hash: true })))
    expect(ok).toEqual({ entries: 1, bytes: zeros.length, hash: createHash("sha256").update(zeros).digest("hex") })
  })

  it("a refusal within the budget is found on the calling thread, however much tar follows", async () => {
    const bytes = gz(tar(file("a/../b", "x"), file("zeros", Buffer.alloc(BOMB))))
    const before = checkWorkersStarted()
    const exit = await withLayerFile(bytes, (p) => outcome(checkSmallLayer(p, "l")))
    expect(checkWorkersStarted()).toBe(before)
    expect(Exit.isFailure(exit) && String(exit.cause)).toContain('contains a ".." component')
  })

  it("a layer just over the budget goes to a worker, one just under it does not", async () => {
    // Exact budget edges: an entry whose tar (header, data padded, end marker) is the budget, or a block more.
    const sized = (tarBytes: number) => gz(tar(file("z", Buffer.alloc(tarBytes - 512 - 1024))))
    for (const [bytes, inline] of [
      [sized(INLINE_TAR_BUDGET), true],
      [sized(INLINE_TAR_BUDGET + 512), false]
    ] as const) {
      const r = await withLayerFile(bytes, (p) => Effect.runPromise(checkSmallLayer(p, "l")))
      expect(r === undefined, `${bytes.length} bytes of gzip`).toBe(!inline)
    }
  })

  it("a file over INLINE_MAX goes to a worker", async () => {
    const bytes = gz(tar(file("r", randomBytes(INLINE_MAX)))) // incompressible: a little over INLINE_MAX
    expect(bytes.length).toBeGreaterThan(INLINE_MAX)
    expect(await withLayerFile(bytes, (p) => Effect.runPromise(checkSmallLayer(p, "l")))).toBeUndefined()
  })
})
