// Hand-built tar headers for reader tests: every field settable, including the hostile ones (PAX
// `x`/`g` records with newlines or wrong lengths, GNU `L`/`K`, base-256 numbers, bad checksums,
// sparse and unknown types). Nothing here validates: that is the reader's job.
import { randomBytes } from "node:crypto"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { gzipSync } from "node:zlib"

export const BLOCK = 512

export interface HeaderSpec {
  readonly name?: string
  /** Type flag character ("0" file, "5" dir, "x" PAX, "L" GNU long name...). */
  readonly type?: string
  readonly mode?: number
  readonly uid?: number | bigint
  readonly gid?: number | bigint
  readonly size?: number | bigint
  readonly mtime?: number | bigint
  readonly linkname?: string
  readonly uname?: string
  readonly gname?: string
  readonly prefix?: string
  /** "ustar" (POSIX, default), "gnu" (`ustar  \0`) or "v7" (no magic). */
  readonly format?: "ustar" | "gnu" | "v7"
  /** Numeric fields written in base-256 even when octal fits. */
  readonly base256?: ReadonlyArray<"uid" | "gid" | "size" | "mtime">
  /** Adds this to the correct checksum (0: correct). */
  readonly checksumDelta?: number
  /** Last word on the block, before the checksum is computed. */
  readonly patch?: (b: Buffer) => void
}

/** GNU base-256: 0x80 (or 0xff when negative) then the two's complement, big-endian. */
const base256 = (v: bigint, width: number): Buffer => {
  const b = Buffer.alloc(width)
  let x = v < 0n ? (1n << BigInt(8 * width)) + v : v
  for (let i = width - 1; i >= 0; i--) {
    b[i] = Number(x & 0xffn)
    x >>= 8n
  }
  b[0] = v < 0n ? 0xff : 0x80
  return b
}

const numeric = (b: Buffer, off: number, width: number, v: number | bigint, force: boolean) => {
  const big = BigInt(v)
  if (force || big < 0n || big >= 8n ** BigInt(width - 1)) base256(big, width).copy(b, off)
  else b.write(big.toString(8).padStart(width - 1, "0") + "\0", off, "latin1")
}

export const header = (h: HeaderSpec = {}): Buffer => {
  const b = Buffer.alloc(BLOCK)
  const force = new Set(h.base256 ?? [])
  Buffer.from(h.name ?? "file", "utf8").copy(b, 0, 0, 100)
  numeric(b, 100, 8, h.mode ?? 0o644, false)
  numeric(b, 108, 8, h.uid ?? 1000, force.has("uid"))
  numeric(b, 116, 8, h.gid ?? 1000, force.has("gid"))
  numeric(b, 124, 12, h.size ?? 0, force.has("size"))
  numeric(b, 136, 12, h.mtime ?? 1_600_000_000, force.has("mtime"))
  b.write(h.type ?? "0", 156, "latin1")
  Buffer.from(h.linkname ?? "", "utf8").copy(b, 157, 0, 100)
  const fmt = h.format ?? "ustar"
  if (fmt === "ustar") b.write("ustar\u000000", 257, "latin1")
  if (fmt === "gnu") b.write("ustar  \0", 257, "latin1")
  Buffer.from(h.uname ?? "user", "utf8").copy(b, 265, 0, 32)
  Buffer.from(h.gname ?? "group", "utf8").copy(b, 297, 0, 32)
  if (h.prefix) Buffer.from(h.prefix, "utf8").copy(b, 345, 0, 155)
  h.patch?.(b)
  b.fill(0x20, 148, 156)
  let sum = 0
  for (const c of b) sum += c
  b.write((sum + (h.checksumDelta ?? 0)).toString(8).padStart(6, "0") + "\0 ", 148, "latin1")
  return b
}

export const pad = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)])

/** One PAX record with its length prefix counted in bytes. */
export const paxRecord = (key: string, value: string | Buffer): Buffer => {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from("\n")])
  let len = body.length + 1
  while (String(len).length + body.length !== len) len = String(len).length + body.length
  return Buffer.concat([Buffer.from(String(len)), body])
}

/** A PAX header (`x`, or `g` global) holding `records` (pairs, or raw bytes taken as the body). */
export const pax = (records: ReadonlyArray<readonly [string, string]> | Buffer, type: "x" | "g" = "x", h: HeaderSpec = {}): Buffer => {
  const body = Buffer.isBuffer(records) ? records : Buffer.concat(records.map(([k, v]) => paxRecord(k, v)))
  return Buffer.concat([header({ name: "PaxHeader/x", ...h, type, size: body.length }), pad(body)])
}

/** A GNU long name (`L`) or long link name (`K`): the name plus a NUL. */
export const gnuLong = (type: "L" | "K", name: string | Buffer): Buffer => {
  const body = Buffer.concat([Buffer.from(name), Buffer.from([0])])
  return Buffer.concat([header({ name: "././@LongLink", type, size: body.length, format: "gnu" }), pad(body)])
}

/** A regular file entry with its content. */
export const file = (name: string, content: string | Buffer = "", h: HeaderSpec = {}): Buffer => {
  const data = Buffer.from(content)
  return Buffer.concat([header({ name, size: data.length, ...h }), pad(data)])
}

export const dir = (name: string, h: HeaderSpec = {}): Buffer => header({ name, type: "5", mode: 0o755, ...h })
export const symlink = (name: string, target: string, h: HeaderSpec = {}): Buffer => header({ name, type: "2", linkname: target, mode: 0o777, ...h })
export const hardlink = (name: string, target: string, h: HeaderSpec = {}): Buffer => header({ name, type: "1", linkname: target, ...h })

/** The end-of-archive marker. */
export const eof = (): Buffer => Buffer.alloc(2 * BLOCK)

export const tar = (...parts: ReadonlyArray<Buffer>): Buffer => Buffer.concat([...parts, eof()])

export const gz = (data: Buffer): Buffer => gzipSync(data)

/** A valid layer (tar.gz) holding one file with `content`: addver refuses what agents would refuse. */
export const layerOf = (content: string | Buffer): Buffer => gz(tar(file("content", content, { mtime: 0 })))

/** A valid layer of about `bytes` bytes that does not compress: one file of random content. */
export const randomLayer = (bytes: number): Buffer => gz(tar(file("random", randomBytes(bytes), { mtime: 0 })))

/** A copy of `b` with the byte at `at` inverted. */
export const corrupt = (b: Buffer, at: number): Buffer => {
  const c = Buffer.from(b)
  c[at] = c[at]! ^ 0xff
  return c
}

/** Runs `f` on `bytes` written to `layer.tar.gz` in a temp dir of its own, removed afterwards. */
export const withLayerFile = async <A>(bytes: Buffer, f: (p: string) => Promise<A>): Promise<A> => {
  const d = await mkdtemp(path.join(os.tmpdir(), "layer-file-"))
  try {
    const p = path.join(d, "layer.tar.gz")
    await writeFile(p, bytes)
    return await f(p)
  } finally {
    await rm(d, { recursive: true, force: true })
  }
}
