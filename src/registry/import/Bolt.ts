// A read-only reader of bolt (boltdb/bolt, etcd-io/bbolt) database files, as the Go deploy-registry
// wrote its state.db. Only what an import needs: find the newest valid meta page, walk the B+trees
// of buckets (branch and leaf pages, overflow pages, inline buckets) and hand back keys and values.
//
// The file is untrusted input: every offset and length is checked against the bytes it must lie in,
// every page is visited at most once (a corrupt file cannot loop), and any inconsistency is a
// BoltCorrupt with one line of text, never an exception from a read past the end.
//
// Layout (little-endian, as every platform Go's bolt runs on writes it):
//   page header (16 bytes): id u64, flags u16, count u16, overflow u32; a page spans 1+overflow pages.
//   meta (after the header of pages 0 and 1): magic u32, version u32, pageSize u32, flags u32,
//     root bucket {root u64, sequence u64}, freelist u64, pgid u64 (high-water mark), txid u64,
//     checksum u64 = FNV-1a 64 of the 56 bytes before it.
//   branch element (16 bytes): pos u32, ksize u32, pgid u64; leaf element (16 bytes): flags u32,
//     pos u32, ksize u32, vsize u32; pos counts from the element's own first byte.
//   bucket value: {root u64, sequence u64}; root 0 means inline: a leaf page follows in the value.

const MAGIC = 0xed0cdaed
const VERSION = 2
const HEADER = 16
const ELEMENT = 16
const META_SIZE = 64
const BRANCH = 0x01
const LEAF = 0x02
const META = 0x04
const BUCKET_LEAF = 0x01
/** Bolt keeps trees shallow; anything deeper than this is a corrupt file, not a big one. */
const MAX_DEPTH = 64

/** Why the file cannot be read, one line. */
export class BoltCorrupt extends Error {}

const fail = (why: string): never => {
  throw new BoltCorrupt(why)
}

/** A window of the file (a page run, or an inline bucket's value) that reads are checked against. */
class Span {
  constructor(
    readonly buf: Buffer,
    readonly start: number,
    readonly end: number,
    readonly what: string
  ) {}
  private check(off: number, len: number) {
    if (!Number.isSafeInteger(off) || len < 0 || off < this.start || off + len > this.end) {
      fail(`${this.what}: offset ${off - this.start}+${len} out of range`)
    }
  }
  u16(off: number) {
    this.check(off, 2)
    return this.buf.readUInt16LE(off)
  }
  u32(off: number) {
    this.check(off, 4)
    return this.buf.readUInt32LE(off)
  }
  u64(off: number) {
    this.check(off, 8)
    const v = this.buf.readBigUInt64LE(off)
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(v)
  }
  bytes(off: number, len: number) {
    this.check(off, len)
    return this.buf.subarray(off, off + len)
  }
}

interface Meta {
  readonly pageSize: number
  readonly root: number
  readonly pgid: number
  readonly txid: number
}

const fnv1a64 = (bytes: Uint8Array): bigint => {
  let h = 0xcbf29ce484222325n
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn
  return h
}

/** The meta of the page at `pageOff`, or why it is not valid. */
const readMeta = (buf: Buffer, pageOff: number): Meta | string => {
  if (pageOff + HEADER + META_SIZE > buf.length) return "file too short"
  const m = pageOff + HEADER
  if (buf.readUInt32LE(m) !== MAGIC) return "not a bolt database (bad magic)"
  if (buf.readUInt32LE(m + 4) !== VERSION) return `unsupported bolt version ${buf.readUInt32LE(m + 4)}`
  if (buf.readBigUInt64LE(m + 56) !== fnv1a64(buf.subarray(m, m + 56))) return "meta page checksum mismatch"
  if ((buf.readUInt16LE(pageOff + 8) & META) === 0) return "meta page has wrong type"
  const span = new Span(buf, m, m + META_SIZE, "meta")
  const pageSize = span.u32(m + 8)
  if (pageSize < 512 || pageSize > 1 << 20 || (pageSize & (pageSize - 1)) !== 0) return `bad page size ${pageSize}`
  const meta = { pageSize, root: span.u64(m + 16), pgid: span.u64(m + 40), txid: span.u64(m + 48) }
  if (meta.root < 2 || meta.root >= meta.pgid) return `root page ${meta.root} out of range`
  return meta
}

/** The valid meta with the highest transaction id; bolt alternates between the two meta pages. */
const chooseMeta = (buf: Buffer): Meta => {
  if (buf.length < HEADER + META_SIZE) fail("file too short to be a bolt database")
  const first = readMeta(buf, 0)
  // Page 1 sits one page further; when page 0 is damaged its page size is unknown, so try the usual ones.
  const sizes = typeof first === "string" ? [4096, 8192, 16384, 32768, 65536, 1024, 2048] : [first.pageSize]
  let second: Meta | string = "no second meta page"
  for (const size of sizes) {
    second = readMeta(buf, size)
    if (typeof second !== "string" && second.pageSize === size) break
    if (typeof second !== "string") second = "second meta page has a different page size"
  }
  const valid = [first, second].filter((m): m is Meta => typeof m !== "string")
  if (valid.length === 0) fail(typeof first === "string" ? first : "no valid meta page")
  return valid.reduce((a, b) => (b.txid > a.txid ? b : a))
}

/** One key of a bucket: a plain value, or a nested bucket. */
export type BoltEntry =
  | { readonly _tag: "Value"; readonly key: Buffer; readonly value: Buffer }
  | { readonly _tag: "Bucket"; readonly key: Buffer; readonly bucket: BoltBucket }

export interface BoltBucket {
  /** Every key in byte order. */
  readonly entries: () => ReadonlyArray<BoltEntry>
  readonly value: (key: string) => Buffer | undefined
  readonly bucket: (key: string) => BoltBucket | undefined
}

export interface BoltDb {
  readonly pageSize: number
  readonly txid: number
  readonly root: BoltBucket
}

/**
 * Parses `buf` (the whole file). Pages are read lazily as buckets are walked, so a BoltCorrupt can
 * also come from `entries()`; callers turn it into their one-line error.
 */
export const openBolt = (buf: Buffer): BoltDb => {
  const meta = chooseMeta(buf)
  const { pageSize } = meta
  const visited = new Set<number>()

  const page = (id: number): { span: Span; off: number } => {
    if (!Number.isSafeInteger(id) || id < 2 || id >= meta.pgid) fail(`page ${id} out of range`)
    if (visited.has(id)) fail(`page ${id} is referenced twice`)
    visited.add(id)
    const off = id * pageSize
    if (off + HEADER > buf.length) fail(`page ${id} lies beyond the end of the file (truncated?)`)
    const overflow = buf.readUInt32LE(off + 12)
    const end = off + (overflow + 1) * pageSize
    if (id + overflow >= meta.pgid || end > buf.length) fail(`page ${id} runs beyond the end of the file (truncated?)`)
    if (buf.readBigUInt64LE(off) !== BigInt(id)) fail(`page ${id} has the id of another page`)
    return { span: new Span(buf, off, end, `page ${id}`), off }
  }

  /** Leaf elements of the tree under the page at `off` in `span`, in key order. */
  const collect = (span: Span, off: number, depth: number, out: Array<BoltEntry>) => {
    if (depth > MAX_DEPTH) fail("bucket tree too deep")
    const flags = span.u16(off + 8)
    const count = span.u16(off + 10)
    span.bytes(off, HEADER + count * ELEMENT) // the element array itself lies in the page
    if (flags === BRANCH) {
      for (let i = 0; i < count; i++) {
        const child = page(span.u64(off + HEADER + i * ELEMENT + 8))
        collect(child.span, child.off, depth + 1, out)
      }
    } else if (flags === LEAF) {
      for (let i = 0; i < count; i++) {
        const el = off + HEADER + i * ELEMENT
        const eflags = span.u32(el)
        const kpos = el + span.u32(el + 4)
        const ksize = span.u32(el + 8)
        const value = span.bytes(kpos + ksize, span.u32(el + 12))
        const key = span.bytes(kpos, ksize)
        if (out.length > 0 && Buffer.compare(out[out.length - 1]!.key, key) >= 0) fail(`${span.what}: keys out of order`)
        out.push(eflags & BUCKET_LEAF ? { _tag: "Bucket", key, bucket: bucketOf(value, depth + 1) } : { _tag: "Value", key, value })
      }
    } else fail(`${span.what}: unexpected page type 0x${flags.toString(16)}`)
  }

  const bucketAt = (load: () => Array<BoltEntry>): BoltBucket => {
    let cache: Array<BoltEntry> | undefined
    const entries = () => (cache ??= load())
    const find = (key: string) => entries().find((e) => e.key.equals(Buffer.from(key)))
    return {
      entries,
      value: (key) => {
        const e = find(key)
        return e?._tag === "Value" ? e.value : undefined
      },
      bucket: (key) => {
        const e = find(key)
        return e?._tag === "Bucket" ? e.bucket : undefined
      }
    }
  }

  const bucketOf = (value: Buffer, depth: number): BoltBucket => {
    const span = new Span(value, 0, value.length, "bucket value")
    const root = span.u64(0)
    if (root !== 0) {
      // Checked now, so that an out-of-range root is reported even if the bucket is never read.
      if (!Number.isSafeInteger(root) || root < 2 || root >= meta.pgid) fail(`bucket root page ${root} out of range`)
      return bucketAt(() => {
        const p = page(root)
        const out: Array<BoltEntry> = []
        collect(p.span, p.off, depth, out)
        return out
      })
    }
    const inline = new Span(value, HEADER, value.length, "inline bucket")
    return bucketAt(() => {
      const out: Array<BoltEntry> = []
      if (inline.u16(HEADER + 8) !== LEAF) fail("inline bucket is not a leaf page")
      collect(inline, HEADER, depth, out)
      return out
    })
  }

  const rootValue = Buffer.alloc(16)
  rootValue.writeBigUInt64LE(BigInt(meta.root), 0)
  return { pageSize, txid: meta.txid, root: bucketOf(rootValue, 0) }
}
