// Writes one planned layer as a .tar.gz: the surviving entries in their original order, with their
// modes, owners, mtimes and link targets, data copied from the layer tars on disk by offset (a hard
// link turned into a file reads its target's bytes, possibly from an earlier layer). The output is
// hashed as it is written, ready for upload; nothing is held in memory beyond a chunk.
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createWriteStream } from "node:fs"
import * as fs from "node:fs/promises"
import { Readable, Transform } from "node:stream"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { LocalIoError } from "../domain/DockerErrors.js"
import { encodeHeader, endOfArchive, padding, type TarEntry } from "./TarFile.js"
import type { LayerPlan } from "./Whiteouts.js"

export interface RepackSource {
  readonly tarPath: string
  readonly entries: ReadonlyArray<TarEntry>
}

export interface Packed {
  readonly path: string
  /** sha256 (hex) of the .tar.gz: what the registry stores it under. */
  readonly sha256: string
  readonly size: number
  /** Entries written. */
  readonly entries: number
}

const CHUNK = 256 << 10
const BATCH = 64 << 10

/** The uncompressed tar stream of layer `layer` under `plan`, as Buffers of up to ~1 MiB. */
async function* tarStream(layers: ReadonlyArray<RepackSource>, layer: number, plan: LayerPlan, count: { n: number }) {
  const handles = new Map<number, fs.FileHandle>()
  const handle = async (l: number) => {
    let h = handles.get(l)
    if (h === undefined) {
      h = await fs.open(layers[l]!.tarPath, "r")
      handles.set(l, h)
    }
    return h
  }
  // Headers and small files are batched so gzip sees few, larger writes.
  let batch: Array<Buffer> = []
  let batched = 0
  const add = (b: Buffer) => {
    batch.push(b)
    batched += b.length
  }
  const flush = () => {
    const out = Buffer.concat(batch)
    batch = []
    batched = 0
    return out
  }
  try {
    const { entries } = layers[layer]!
    for (let i = 0; i < entries.length; i++) {
      if (plan.drop[i] === 1) continue
      const e = entries[i]!
      const copy = plan.copies.get(i)
      const data = copy ? { layer: copy.layer, entry: layers[copy.layer]!.entries[copy.entry]! } : e.kind === "File" ? { layer, entry: e } : undefined
      const size = data?.entry.size ?? 0
      add(encodeHeader(e, copy ? "File" : e.kind, size))
      count.n++
      if (data !== undefined && size > 0) {
        const h = await handle(data.layer)
        let done = 0
        while (done < size) {
          const len = Math.min(CHUNK, size - done)
          const buf = Buffer.allocUnsafe(len)
          const { bytesRead } = await h.read(buf, 0, len, data.entry.dataOffset + done)
          if (bytesRead === 0) throw new Error(`layer data ended early (${data.entry.path})`)
          add(bytesRead === len ? buf : buf.subarray(0, bytesRead))
          done += bytesRead
          if (batched >= BATCH) yield flush()
        }
        add(padding(size))
      }
      if (batched >= BATCH) yield flush()
    }
    add(endOfArchive())
    yield flush()
  } finally {
    for (const h of handles.values()) await h.close()
  }
}

/** Writes layer `layer` (0-based) of `layers` under `plan` to `out` as gzip, hashing it. */
export const repack = (layers: ReadonlyArray<RepackSource>, layer: number, plan: LayerPlan, out: string): Effect.Effect<Packed, LocalIoError> =>
  Effect.tryPromise({
    try: async (signal) => {
      const hash = createHash("sha256")
      let size = 0
      const count = { n: 0 }
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk)
          size += chunk.length
          cb(null, chunk)
        }
      })
      await pipeline(Readable.from(tarStream(layers, layer, plan, count)), zlib.createGzip(), hasher, createWriteStream(out), { signal })
      return { path: out, sha256: hash.digest("hex"), size, entries: count.n }
    },
    catch: (cause) => new LocalIoError({ message: `cannot re-pack layer ${layer + 1}: ${(cause as Error).message}`, cause })
  })
