// An upload's sha256 from the worker reading back its completed prefix: the prefix never takes in a
// write that could change bytes already read (property over reordered, overlapping, interleaved writes),
// and the digest is the file's, streamed or (after an overlap) hashed whole.
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, FastCheck as fc } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { checkLayerInWorker, checkWorkersStarted, type WorkerReply } from "../../src/archive/LayerCheck.js"
import { INLINE_MAX } from "../../src/fs/FileHasher.js"
import { CompletedPrefix, MAX_SPANS, uploadHash } from "../../src/registry/UploadHash.js"
import { file as tarFile, gz, tar } from "../support/tar.js"

const overlap = (a: { o: number; n: number }, b: { o: number; n: number }) => a.n > 0 && b.n > 0 && a.o < b.o + b.n && b.o < a.o + a.n

describe("CompletedPrefix", () => {
  it("accepts exactly the writes that overlap nothing accepted; done is the completed, gapless prefix", () => {
    const write = fc.record({ o: fc.integer({ min: 0, max: 48 }), n: fc.integer({ min: 0, max: 12 }) })
    // Each step: a write arrives (true) or the pick-th unfinished accepted write completes (false).
    const step = fc.tuple(fc.boolean(), write, fc.nat())
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const p = new CompletedPrefix()
        const accepted: Array<{ o: number; n: number; finished: boolean }> = []
        for (const [arrive, w, pick] of steps) {
          if (arrive) {
            const clash = w.o < p.done && w.n > 0 ? true : accepted.some((a) => overlap(a, w))
            const ok = p.arrived(w.o, w.n)
            expect(ok).toBe(!clash) // refuses every overlap, and nothing else
            if (!ok) return // the caller stops streaming here
            if (w.n > 0) accepted.push({ ...w, finished: false })
          } else {
            const open = accepted.filter((a) => !a.finished)
            if (open.length === 0) continue
            const a = open[pick % open.length]!
            a.finished = true
            p.wrote(a.o, a.n)
          }
          // [0, done) is covered by finished writes, and done stops at the first byte that is not.
          let expected = 0
          for (let moved = true; moved; ) {
            moved = false
            for (const a of accepted) if (a.finished && a.o === expected) ((expected = a.o + a.n), (moved = true))
          }
          expect(p.done).toBe(expected)
        }
      }),
      { numRuns: 2000 }
    )
  })

  it("gives up past MAX_SPANS writes waiting beyond the prefix", () => {
    const p = new CompletedPrefix()
    for (let i = 1; i <= MAX_SPANS; i++) expect(p.arrived(i * 10, 10)).toBe(true)
    expect(p.arrived((MAX_SPANS + 1) * 10, 10)).toBe(false)
  })
})

describe("uploadHash", () => {
  let dir: string
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "upload-hash-"))
  })
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true })
  })
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

  /** Writes `writes` to a new file in order of arrival, completing them in `order`; returns the digest. */
  const upload = async (writes: ReadonlyArray<{ o: number; data: Buffer }>, order: ReadonlyArray<number>) => {
    const file = path.join(dir, `f${Math.random()}`)
    const fh = await fs.open(file, "wx")
    const h = uploadHash(file, { reportEvery: 1 }) // every completion reported: the worker reads as early as it can
    for (const w of writes) h.arrived(w.o, w.data.length)
    let size = 0
    for (const i of order) {
      const w = writes[i]!
      await fh.write(w.data, 0, w.data.length, w.o)
      size = Math.max(size, w.o + w.data.length)
      h.wrote(w.o, w.data.length)
      await new Promise((r) => setTimeout(r, 5)) // let the worker read what is reported
    }
    await fh.sync()
    await fh.close()
    const hex = await Effect.runPromise(h.digest(size))
    return { hex, file: await fs.readFile(file) }
  }

  it("streams writes that complete out of order to the file's digest", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const cut = [0, 1_000_000, 1_000_001, 2_500_000, data.length]
    const writes = cut.slice(0, -1).map((o, i) => ({ o, data: data.subarray(o, cut[i + 1]) }))
    const { hex } = await upload(writes, [2, 0, 3, 1])
    expect(hex).toBe(sha(data))
  })

  it("a rewrite of bytes the worker may have read is hashed by what the file finally holds", async () => {
    const data = randomBytes(2 * 1024 * 1024)
    const patch = randomBytes(1000)
    // The whole file completes (and is read back) before the rewrite of its start arrives.
    const file = path.join(dir, "rewritten")
    const fh = await fs.open(file, "wx")
    const h = uploadHash(file, { reportEvery: 1 })
    h.arrived(0, data.length)
    await fh.write(data, 0, data.length, 0)
    h.wrote(0, data.length)
    await new Promise((r) => setTimeout(r, 50))
    h.arrived(0, patch.length)
    await fh.write(patch, 0, patch.length, 0)
    h.wrote(0, patch.length)
    await fh.close()
    const hex = await Effect.runPromise(h.digest(data.length))
    expect(hex).toBe(sha(await fs.readFile(file)))
    expect(hex).not.toBe(sha(data))
  })

  it("a file with a hole (a range never written) is hashed whole, zeros and all", async () => {
    const a = randomBytes(100)
    const { hex, file } = await upload([{ o: 0, data: a }, { o: 200, data: a }], [1, 0])
    expect(file.length).toBe(300)
    expect(hex).toBe(sha(file))
  })

  /** Uploads `bytes` in `pieces` writes completing in `order`, the check asked for: the digest and every verdict given. */
  const checkedUpload = async (bytes: Buffer, order: ReadonlyArray<number>, rewriteStart = false) => {
    const file = path.join(dir, `c${Math.random()}`)
    const fh = await fs.open(file, "wx")
    const verdicts: Array<{ hash: string; verdict: WorkerReply }> = []
    const h = uploadHash(file, { reportEvery: 1, onVerdict: (hash, verdict) => Effect.sync(() => void verdicts.push({ hash, verdict })) })
    const cut = Array.from({ length: order.length + 1 }, (_, i) => Math.floor((bytes.length * i) / order.length))
    for (const i of order) h.arrived(cut[i]!, cut[i + 1]! - cut[i]!)
    for (const i of order) {
      await fh.write(bytes, cut[i]!, cut[i + 1]! - cut[i]!, cut[i]!)
      h.wrote(cut[i]!, cut[i + 1]! - cut[i]!)
      await new Promise((r) => setTimeout(r, 5))
    }
    if (rewriteStart) {
      h.arrived(0, 10)
      await fh.write(bytes, 0, 10, 0)
      h.wrote(0, 10)
    }
    await fh.sync()
    await fh.close()
    const hex = await Effect.runPromise(h.digest(bytes.length))
    return { hex, verdicts, file }
  }

  it("checks the layer from the same read-back: at CLOSE the verdict is known with the hash, the worker's verdict, no check worker started", async () => {
    const good = gz(tar(tarFile("a", randomBytes(INLINE_MAX)), tarFile("b", "x")))
    const bad = gz(tar(tarFile("a", randomBytes(INLINE_MAX)), tarFile("../b", "x")))
    const notGzip = randomBytes(2 * INLINE_MAX)
    for (const [bytes, order] of [[good, [0, 1, 2]], [bad, [1, 0, 2, 3]], [notGzip, [0, 1]]] as const) {
      const before = checkWorkersStarted()
      const { hex, verdicts, file } = await checkedUpload(bytes, order)
      expect(checkWorkersStarted()).toBe(before)
      expect(hex).toBe(sha(bytes))
      expect(verdicts).toHaveLength(1)
      expect(verdicts[0]!.hash).toBe(hex)
      const worker = await Effect.runPromise(Effect.either(checkLayerInWorker(file, "")))
      const expected: WorkerReply = worker._tag === "Right" ? { ok: { ...worker.right, hash: undefined } }
        : worker.left._tag === "LayerRefused" ? { refused: { layer: "", entry: worker.left.entry, reason: worker.left.reason } }
        : { unreadable: worker.left.reason }
      expect(verdicts[0]!.verdict).toEqual(expected)
    }
  })

  it("no verdict where the streamed hash is not trusted (an overlapping rewrite), nor for a small file: addver checks those", async () => {
    const good = gz(tar(tarFile("a", randomBytes(INLINE_MAX))))
    expect((await checkedUpload(good, [0, 1], true)).verdicts).toEqual([])
    expect((await checkedUpload(gz(tar(tarFile("a", "small"))), [0])).verdicts).toEqual([])
  })
})
