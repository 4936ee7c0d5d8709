import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { crc32, deflateRawSync } from "node:zlib"
import { checkLayerFile, checkLayerInWorker, readLayer } from "../../src/archive/LayerCheck.js"
import { LayerRefused, LayerUnreadable } from "../../src/domain/ArchiveErrors.js"
import { dir, file, gz, pax, tar, withLayerFile } from "../support/tar.js"

const good = gz(tar(dir("d/"), file("d/a", "hello"), file("d/b", "x".repeat(5000))))
const zstd = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00, 0x00, 0x00])

describe("LayerCheck", () => {
  it("checkLayerFile counts entries and bytes, or fails with the refusal", async () => {
    expect(await withLayerFile(good, (p) => Effect.runPromise(checkLayerFile(p, "code@v1")))).toEqual({ entries: 3, bytes: good.length })
    const exit = await withLayerFile(gz(tar(pax([["path", "a\nb"]]), file("x"))), (p) => Effect.runPromiseExit(checkLayerFile(p, "code@v1")))
    expect(exit).toEqual(Exit.fail(new LayerRefused({ layer: "code@v1", entry: "", reason: "PAX path holds a newline" })))
  })

  it("readLayer streams content in order; a missing file is LayerUnreadable", async () => {
    const seen: Array<string> = []
    await withLayerFile(good, (p) =>
      readLayer(p, "l", { entry: (e) => seen.push(`${e.kind} ${e.path}`), data: (c) => seen.push(`+${c.length}`), entryEnd: () => seen.push("end") })
    )
    expect(seen).toEqual(["dir d/", "end", "file d/a", "+5", "end", "file d/b", "+5000", "end"])
    await expect(readLayer("/nonexistent/x", "l", { entry() {}, data() {}, entryEnd() {} })).rejects.toBeInstanceOf(LayerUnreadable)
  })

  it("readLayer waits for room: a slow consumer holds reading back and still sees every byte in order", async () => {
    const big = Buffer.alloc(3 << 20)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    const layer = gz(tar(file("a", big), file("b", "end")))
    const got: Array<Buffer> = []
    let waits = 0
    const r = await withLayerFile(layer, (p) =>
      readLayer(p, "l", { entry: () => {}, data: (c) => void got.push(Buffer.from(c)), entryEnd: () => {} }, {
        room: () => (waits++ % 2 === 0 ? new Promise<void>((res) => setImmediate(res)) : undefined)
      })
    )
    expect(r.entries).toBe(2)
    expect(Buffer.concat(got).equals(Buffer.concat([big, Buffer.from("end")]))).toBe(true) // toEqual on MiBs is slow
    expect(waits).toBeGreaterThan(1)
  })

  it("checkLayerInWorker: the same verdicts on a worker thread, with the file's sha256", async () => {
    const ok = await withLayerFile(good, (p) => Effect.runPromise(checkLayerInWorker(p, "code@v1", { hash: true })))
    expect(ok).toEqual({ entries: 3, bytes: good.length, hash: createHash("sha256").update(good).digest("hex") })
    const refused = await withLayerFile(zstd, (p) => Effect.runPromiseExit(checkLayerInWorker(p, "code@v2")))
    expect(refused).toEqual(Exit.fail(new LayerRefused({ layer: "code@v2", entry: "", reason: "zstd-compressed; only gzip is accepted" })))
    const gone = await Effect.runPromiseExit(checkLayerInWorker("/nonexistent/x", "code@v3"))
    expect(Exit.isFailure(gone) && gone.cause._tag === "Fail" && gone.cause.error._tag).toBe("LayerUnreadable")
  })

  it("reads files larger than its ring of read buffers, the deflate end at a read boundary or not", async () => {
    const MiB = 1 << 20
    const content = randomBytes(4 * MiB - 40_000) // incompressible: the deflate data ends just short of 4 MiB
    const plain = tar(file("big", content), file("small", "x"))
    const raw = deflateRawSync(plain)
    const trailer = Buffer.alloc(8)
    trailer.writeUInt32LE(crc32(plain), 0)
    trailer.writeUInt32LE(plain.length, 4)
    // A gzip header with an FEXTRA field of `extra` bytes moves the deflate end where we want it.
    const member = (extra: number) => {
      const head = Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, extra & 0xff, extra >> 8])
      return Buffer.concat([head, Buffer.alloc(extra), raw, trailer])
    }
    const boundary = Math.ceil((12 + raw.length) / MiB) * MiB
    const extraFor = (deflateEnd: number) => deflateEnd - 12 - raw.length
    const ends = [boundary, boundary - 4, boundary - 8, boundary + 3]
    expect(ends.map(extraFor).every((e) => e >= 0 && e <= 0xffff)).toBe(true)
    for (const at of ends) {
      const extra = extraFor(at)
      const m = member(extra)
      const sha = createHash("sha256").update(m).digest("hex")
      const checked = await withLayerFile(m, (p) => Effect.runPromise(checkLayerInWorker(p, "l", { hash: true })))
      expect(checked, `deflate end at ${at}`).toEqual({ entries: 2, bytes: m.length, hash: sha })
      const padded = Buffer.concat([m, Buffer.alloc(MiB + 7)])
      expect(await withLayerFile(padded, (p) => Effect.runPromise(checkLayerFile(p, "l"))), `padded, end at ${at}`).toEqual({ entries: 2, bytes: padded.length })
      const more = Buffer.concat([m, Buffer.alloc(MiB), Buffer.from("x")])
      const exit = await withLayerFile(more, (p) => Effect.runPromiseExit(checkLayerFile(p, "l")))
      expect(exit, `data after, end at ${at}`).toEqual(Exit.fail(new LayerRefused({ layer: "l", entry: "", reason: "data after the gzip stream" })))
    }
  })
})
