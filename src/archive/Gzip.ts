// Strict gzip in front of the tar parser: exactly one gzip member (RFC 1952), its CRC32 and length
// checked, followed by nothing but zero padding. zlib inflates the raw deflate data on the thread
// pool; the header and trailer are read here, because zlib's gunzip silently continues into a
// second member (gzip(tar) ++ gzip(more)) — a second reading of one file. zstd, plain tar and
// anything else that is not gzip is refused, as are gzip streams inside the tar (the parser sees them).
import * as zlib from "node:zlib"
import { LayerRefused } from "../domain/ArchiveErrors.js"

export interface GzipStats {
  /** Bytes of the gzip file, trailing zero padding included. */
  readonly compressed: number
  /** Bytes inflated (the tar stream). */
  readonly inflated: number
}

/** Output chunk of zlib: fewer thread-pool round trips than its 16 KiB default. */
export const INFLATE_CHUNK = 256 * 1024
const MAX_HEADER = 1 << 20
const FHCRC = 2
const FEXTRA = 4
const FNAME = 8
const FCOMMENT = 16

export const crc32: (data: Uint8Array, value?: number) => number =
  (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32 ??
  (() => {
    const table = new Int32Array(256).map((_, n) => {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      return c
    })
    return (data: Uint8Array, value = 0) => {
      let c = ~value
      for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)
      return ~c >>> 0
    }
  })()

/** What the first bytes are when they are not gzip, for the message. */
export const notGzip = (b: Buffer): string =>
  b.length >= 4 && b.readUInt32BE(0) === 0x28b52ffd ? "zstd-compressed; only gzip is accepted"
  : b.length >= 262 && b.toString("latin1", 257, 262) === "ustar" ? "an uncompressed tar; only gzip is accepted"
  : b.length === 0 ? "empty file, not gzip"
  : "not gzip (no gzip header)"

/** Length of the gzip header at the start of `b`; undefined: more bytes needed; string: refused. */
export const gzipHeaderLength = (b: Buffer): number | undefined | string => {
  if (b.length >= 1 && b[0] !== 0x1f) return notGzip(b)
  if (b.length >= 2 && b[1] !== 0x8b) return notGzip(b)
  if (b.length < 10) return undefined
  if (b[2] !== 8) return "unknown gzip compression method"
  const flg = b[3]!
  if (flg & 0xe0) return "reserved gzip header flags set"
  let pos = 10
  if (flg & FEXTRA) {
    if (b.length < pos + 2) return undefined
    pos += 2 + b.readUInt16LE(pos)
  }
  for (const f of [FNAME, FCOMMENT]) {
    if (!(flg & f)) continue
    const nul = b.indexOf(0, pos)
    if (nul < 0) return b.length > MAX_HEADER ? "gzip header too long" : undefined
    pos = nul + 1
  }
  if (flg & FHCRC) {
    if (b.length < pos + 2) return undefined
    if ((crc32(b.subarray(0, pos)) & 0xffff) !== b.readUInt16LE(pos)) return "gzip header checksum mismatch"
    pos += 2
  }
  return b.length < pos ? undefined : pos
}

/** A zlib error as the refusal it stands for; anything else unchanged. */
export const inflateFailure = (refused: (reason: string) => LayerRefused) => (e: unknown): unknown =>
  !(e as { code?: string }).code?.startsWith("Z_") ? e
  : /unexpected end/.test((e as Error).message) ? refused("truncated gzip data (unexpected end of file)")
  : refused(`corrupt gzip data (${(e as Error).message})`)

/** The bytes after the deflate data: the 8-byte trailer, then nothing but zero padding (checked as it comes). */
export class Tail {
  private bytes = Buffer.alloc(0)
  constructor(private readonly refused: (reason: string) => LayerRefused) {}
  /** The next bytes after the deflate data (copied: the caller may reuse `b`). */
  add(b: Buffer): void {
    if (b.length === 0) return
    this.bytes = Buffer.concat([this.bytes, b])
    if (this.bytes.length <= 8) return
    const rest = this.bytes.subarray(8)
    const nz = rest.findIndex((c) => c !== 0)
    if (nz < 0) return void (this.bytes = this.bytes.subarray(0, 8))
    // A 0x1f as the last byte so far: whether a second member starts is known only with the next byte, so
    // the refusal's words never depend on where the file was cut into chunks.
    if (rest[nz] === 0x1f && nz === rest.length - 1) return void (this.bytes = Buffer.concat([this.bytes.subarray(0, 8), rest.subarray(nz)]))
    throw this.extra(rest[nz] === 0x1f && rest[nz + 1] === 0x8b)
  }
  private extra(secondMember: boolean): LayerRefused {
    return this.refused(secondMember ? "a second gzip member after the first" : "data after the gzip stream")
  }
  /** At the end of the file: the trailer is there and matches the inflated data. */
  verify(crc: number, inflated: number): void {
    if (this.bytes.length > 8) throw this.extra(false) // a lone 0x1f held back by add
    if (this.bytes.length < 8) throw this.refused("truncated gzip data (no trailer)")
    if (this.bytes.readUInt32LE(0) !== crc >>> 0) throw this.refused("corrupt gzip data (CRC mismatch)")
    if (this.bytes.readUInt32LE(4) !== inflated % 2 ** 32) throw this.refused("corrupt gzip data (length mismatch)")
  }
}

/**
 * Inflates the single gzip member read from `source`, handing the tar stream to `onData` in order
 * (a returned promise holds reading back until it settles). A chunk of `source` is read only until
 * the next one is asked for: the source may reuse its memory then (LayerCheck.ts reads into a ring).
 * Rejects with LayerRefused for anything but one well-formed member plus zero padding, or with what
 * `source` or `onData` threw.
 */
export const gunzip = async (
  source: AsyncIterable<Buffer>,
  label: string,
  onData: (chunk: Buffer) => void | Promise<void>
): Promise<GzipStats> => {
  const refused = (reason: string) => new LayerRefused({ layer: label, entry: "", reason })
  const z = zlib.createInflateRaw({ chunkSize: INFLATE_CHUNK })
  z.on("error", () => {}) // reported through the reader's iteration; never an uncaught 'error' event
  let crc = 0
  let inflated = 0
  let readerDone = false
  let readerError: unknown = undefined
  const reader = (async () => {
    for await (const out of z as AsyncIterable<Buffer>) {
      crc = crc32(out, crc)
      inflated += out.length
      const r = onData(out)
      if (r !== undefined) await r
    }
  })().then(
    () => void (readerDone = true),
    (e) => {
      readerDone = true
      readerError = e
    }
  )
  const zlibFailure = inflateFailure(refused)

  let head: Buffer | undefined = Buffer.alloc(0)
  let headerLength = 0
  let offset = 0
  /** Input written to zlib and not known consumed: the trailer is in there when the deflate data ends. */
  const retained: Array<{ start: number; buf: Buffer }> = []
  /** Bytes after the deflate data, once its end is known. */
  let tail: Tail | undefined
  const toTail = (start: number, buf: Buffer) => {
    const end = headerLength + z.bytesWritten
    const from = Math.max(0, end - start)
    if (from >= buf.length) return
    ;(tail ??= new Tail(refused)).add(buf.subarray(from))
  }
  const feed = async (start: number, buf: Buffer) => {
    if (readerDone) {
      if (readerError !== undefined) return
      if (tail === undefined) for (const r of retained.splice(0)) toTail(r.start, r.buf)
      return toTail(start, buf)
    }
    retained.push({ start, buf })
    // Until zlib took all of `buf` in (its write callback), or the deflate data ended in it (the reader ends).
    await Promise.race([new Promise((r) => z.write(buf, r)), reader])
    const consumed = headerLength + z.bytesWritten
    while (retained.length > 0 && retained[0]!.start + retained[0]!.buf.length <= consumed) retained.shift()
    // The source may reuse `buf` once the next chunk is asked for: what is still needed is copied.
    if (readerDone) {
      if (readerError === undefined && tail === undefined) for (const r of retained.splice(0)) toTail(r.start, r.buf)
    } else if (retained.length > 0) retained.splice(0, retained.length, ...retained.map((r) => ({ start: r.start, buf: Buffer.from(r.buf) })))
  }
  try {
    for await (const chunk of source) {
      if (readerError !== undefined) break
      const start = offset
      offset += chunk.length
      if (head !== undefined) {
        head = Buffer.concat([head, chunk])
        const len = gzipHeaderLength(head)
        if (typeof len === "string") throw refused(len)
        if (len === undefined) continue
        headerLength = len
        const rest = head.subarray(len)
        head = undefined
        await feed(len, rest)
      } else await feed(start, chunk)
    }
    if (head !== undefined) {
      const len = gzipHeaderLength(head)
      throw refused(typeof len === "string" ? len : head.length === 0 ? notGzip(head) : "truncated gzip header")
    }
    if (readerError === undefined) z.end()
    await reader
    if (readerError !== undefined) throw zlibFailure(readerError)
    if (tail === undefined) for (const r of retained.splice(0)) toTail(r.start, r.buf)
    ;(tail ?? new Tail(refused)).verify(crc, inflated)
    return { compressed: offset, inflated }
  } catch (e) {
    z.destroy()
    await reader
    throw e
  }
}
