// Reads one layer file (gzip'd tar) into a TarSink, with back-pressure from the TreeWriter. Every
// failure (read, inflate, parse, a sink's refusal) rejects the returned promise: no handler of any
// stream in this path can throw into the event loop, so a layer can never take the process down.
//
// TEMPORARY (until src/archive/{Gzip,TarParser}.ts of branch `reader` are merged): zlib's gunzip and
// node-tar's Parser, adapted to TarEntry. node-tar would also decompress a zstd or gzip stream found
// *inside* the gzip, and read only gzip members... so anything but gzip around a tar is refused here.
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as zlib from "node:zlib"
import * as tar from "tar"
import { UnpackError } from "../domain/AgentErrors.js"
import type { EntryKind, TarEntry } from "./Extractor.js"
import type { TreeWriter } from "./TreeWriter.js"

export interface TarSink {
  entry(e: TarEntry): void
  data(chunk: Buffer): void
  entryEnd(): void
}

/** zlib output chunk: fewer thread-pool round trips, and fewer files split across two chunks. */
const INFLATE_CHUNK = 256 * 1024

const KINDS: Partial<Record<string, EntryKind>> = {
  File: "file",
  OldFile: "file",
  ContiguousFile: "file",
  Directory: "dir",
  SymbolicLink: "symlink",
  Link: "hardlink",
  CharacterDevice: "chardev",
  BlockDevice: "blockdev",
  FIFO: "fifo"
}

const unpackError = (label: string, what: string) => new UnpackError({ message: `layer ${label}: ${what}` })

/** Reads `file` into `sink`; resolves when the whole tar stream went through it. One failure, from anywhere, rejects. */
export const readLayer = async (
  file: string,
  label: string,
  sink: TarSink,
  w: TreeWriter,
  signal?: AbortSignal
): Promise<void> => {
  let failure: unknown
  const fail = (e: unknown) => void (failure ??= e)
  const guard =
    <A extends Array<unknown>>(f: (...a: A) => void) =>
    (...a: A) => {
      if (failure !== undefined) return
      try {
        f(...a)
      } catch (e) {
        fail(e)
      }
    }
  const check = () => {
    if (failure !== undefined) throw failure
    if (w.failed !== undefined) throw w.failed
  }
  const unreadable = (e: Error) => Promise.reject(unpackError(label, `cannot read ${file}: ${e.message}`))
  // A layer is a verified blob in the cache: a regular file (a FIFO or device could block us forever).
  if (!(await fsp.lstat(file).catch(unreadable)).isFile()) throw unpackError(label, `cannot read ${file}: not a regular file`)
  const fh = await fsp.open(file, "r").catch(unreadable)
  const magic = Buffer.alloc(2)
  try {
    await fh.read(magic, 0, 2, 0)
  } finally {
    await fh.close()
  }
  if (magic[0] !== 0x1f || magic[1] !== 0x8b) throw unpackError(label, "not a gzip file; only gzip'd tar is accepted")

  const input = fs.createReadStream(file, { highWaterMark: 1024 * 1024 })
  const z = zlib.createGunzip({ chunkSize: INFLATE_CHUNK })
  input.on("error", (e) => z.destroy(unpackError(label, `cannot read ${file}: ${e.message}`)))
  const onAbort = () => z.destroy(unpackError(label, "interrupted"))
  if (signal?.aborted) onAbort()
  signal?.addEventListener("abort", onAbort, { once: true })
  input.pipe(z)

  // Sizes are bounded by the verified blob; a highly compressible layer is legitimate.
  const parser = new tar.Parser({ strict: true, maxDecompressionRatio: Number.POSITIVE_INFINITY })
  let entries = 0
  let sawEof = false
  let ended = false
  parser.on("eof", guard(() => (sawEof = true)))
  const whenEnded: Array<() => void> = []
  const end = () => {
    ended = true
    for (const f of whenEnded.splice(0)) f()
  }
  parser.on("end", end)
  parser.on(
    "entry",
    guard((re: tar.ReadEntry) => {
      entries++
      const kind = KINDS[re.type]
      if (kind === undefined) throw unpackError(label, `entry ${JSON.stringify(re.path.slice(0, 200))}: unsupported entry type ${re.type}`)
      if (re.mtime === undefined) throw unpackError(label, `entry ${JSON.stringify(re.path.slice(0, 200))}: unreadable mtime`)
      sink.entry({
        path: re.path,
        kind,
        mode: re.mode ?? 0,
        uid: re.uid ?? 0,
        gid: re.gid ?? 0,
        uname: re.uname ?? "",
        gname: re.gname ?? "",
        mtime: re.mtime.getTime() / 1000,
        atime: re.atime === undefined ? undefined : re.atime.getTime() / 1000,
        size: re.size ?? 0,
        linkpath: re.linkpath ?? ""
      })
      re.on("data", guard((c: Buffer) => sink.data(c)))
      re.on("end", guard(() => sink.entryEnd()))
      re.on("error", fail)
      re.resume()
    })
  )
  parser.on("error", (err: Error & { tarCode?: string }) => {
    // An archive with no entries at all (GNU tar's `-T /dev/null`) is valid; tar's Parser calls it unrecognized.
    if (err.tarCode === "TAR_BAD_ARCHIVE" && entries === 0 && sawEof && /Unrecognized/.test(err.message)) return
    fail(unpackError(label, err.message))
    end()
  })
  parser.on("warn", (code: string, message: string) => {
    if (code === "TAR_ENTRY_INVALID" || code === "TAR_BAD_ARCHIVE") fail(unpackError(label, message))
  })

  let first = true
  try {
    for await (const chunk of z as AsyncIterable<Buffer>) {
      if (first) {
        first = false
        // node-tar would inflate a compressed stream inside the gzip (and lacks zstd: a TypeError).
        if ((chunk[0] === 0x1f && chunk[1] === 0x8b) || (chunk.length >= 4 && chunk.readUInt32BE(0) === 0x28b52ffd))
          throw unpackError(label, "a compressed stream inside the gzip; only gzip'd tar is accepted")
      }
      parser.write(chunk)
      check()
      w.flush()
      check()
      if (w.full()) await new Promise<void>((resolve) => w.whenRoom(resolve))
      check()
    }
    parser.end()
    if (!ended) await new Promise<void>((resolve) => whenEnded.push(resolve))
    check()
  } catch (e) {
    const cause = failure ?? e
    if (cause instanceof UnpackError) throw cause
    if ((cause as { code?: string }).code?.startsWith("Z_")) throw unpackError(label, `gzip: ${(cause as Error).message}`)
    throw cause
  } finally {
    signal?.removeEventListener("abort", onAbort)
    input.destroy()
    z.destroy()
  }
}
