// Test only: writes valid bolt files, laid out as Go's bolt lays them out, so the reader can be
// tested on more than the one fixture: branch pages (many keys), overflow pages (a value larger than
// a page), inline buckets (small ones without sub-buckets) and pages of their own (the rest).
//
// Not a full bolt: no freelist content (an empty freelist page), pages allocated in order, leaves
// filled up to one page. Two meta pages: `previous`, when given, is a second tree that the older
// meta (lower txid) points to, so tests can see which meta the reader chose.

const HEADER = 16
const ELEMENT = 16
const BRANCH = 0x01
const LEAF = 0x02
const META = 0x04
const FREELIST = 0x10
const MAGIC = 0xed0cdaed

/** A bucket: keys (any order; written in byte order) to values or nested buckets. */
export type BoltTree = Map<string, Buffer | string | BoltTree>

interface Elem {
  readonly key: Buffer
  readonly value: Buffer
  readonly flags: number
}

const fnv1a64 = (bytes: Uint8Array): bigint => {
  let h = 0xcbf29ce484222325n
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn
  return h
}

/** A page's bytes (header + elements + keys/values); the header's id and overflow are set when placed. */
const leafBytes = (elems: ReadonlyArray<Elem>): Buffer => {
  const size = HEADER + elems.length * ELEMENT + elems.reduce((n, e) => n + e.key.length + e.value.length, 0)
  const b = Buffer.alloc(size)
  b.writeUInt16LE(LEAF, 8)
  b.writeUInt16LE(elems.length, 10)
  let data = HEADER + elems.length * ELEMENT
  elems.forEach((e, i) => {
    const el = HEADER + i * ELEMENT
    b.writeUInt32LE(e.flags, el)
    b.writeUInt32LE(data - el, el + 4)
    b.writeUInt32LE(e.key.length, el + 8)
    b.writeUInt32LE(e.value.length, el + 12)
    e.key.copy(b, data)
    e.value.copy(b, data + e.key.length)
    data += e.key.length + e.value.length
  })
  return b
}

const branchBytes = (children: ReadonlyArray<{ key: Buffer; pgid: number }>): Buffer => {
  const size = HEADER + children.length * ELEMENT + children.reduce((n, c) => n + c.key.length, 0)
  const b = Buffer.alloc(size)
  b.writeUInt16LE(BRANCH, 8)
  b.writeUInt16LE(children.length, 10)
  let data = HEADER + children.length * ELEMENT
  children.forEach((c, i) => {
    const el = HEADER + i * ELEMENT
    b.writeUInt32LE(data - el, el)
    b.writeUInt32LE(c.key.length, el + 4)
    b.writeBigUInt64LE(BigInt(c.pgid), el + 8)
    c.key.copy(b, data)
    data += c.key.length
  })
  return b
}

export interface BoltStats {
  pages: number
  branchPages: number
  leafPages: number
  overflowPages: number
  inlineBuckets: number
  pagedBuckets: number
}

export interface WriteOptions {
  readonly pageSize?: number
  /** A tree the older meta page points to. */
  readonly previous?: BoltTree
}

/** The bytes of a bolt file holding `tree` (the root bucket's keys), and what it is made of. */
export const writeBolt = (tree: BoltTree, options: WriteOptions = {}): { bytes: Buffer; stats: BoltStats } => {
  const pageSize = options.pageSize ?? 4096
  const pages: Array<Buffer> = [] // index = pgid - 3 (0, 1: meta; 2: freelist)
  const stats: BoltStats = { pages: 0, branchPages: 0, leafPages: 0, overflowPages: 0, inlineBuckets: 0, pagedBuckets: 0 }

  const place = (page: Buffer): number => {
    const id = 3 + pages.reduce((n, p) => n + p.length / pageSize, 0)
    const span = Math.max(1, Math.ceil(page.length / pageSize))
    const out = Buffer.alloc(span * pageSize)
    page.copy(out)
    out.writeBigUInt64LE(BigInt(id), 0)
    out.writeUInt32LE(span - 1, 12)
    pages.push(out)
    stats.overflowPages += span - 1
    return id
  }

  /** Writes the tree's pages; returns the root page id. */
  const writeTree = (elems: ReadonlyArray<Elem>): number => {
    // Leaves: fill up to one page; an element bigger than a page gets a leaf of its own (overflow pages).
    let level: Array<{ key: Buffer; pgid: number }> = []
    let run: Array<Elem> = []
    let size = HEADER
    const flush = () => {
      if (run.length === 0 && level.length > 0) return
      level.push({ key: run[0]?.key ?? Buffer.alloc(0), pgid: place(leafBytes(run)) })
      stats.leafPages++
      run = []
      size = HEADER
    }
    for (const e of elems) {
      const add = ELEMENT + e.key.length + e.value.length
      if (run.length > 0 && size + add > pageSize) flush()
      run.push(e)
      size += add
    }
    flush()
    while (level.length > 1) {
      const next: Array<{ key: Buffer; pgid: number }> = []
      let group: Array<{ key: Buffer; pgid: number }> = []
      let gsize = HEADER
      const emit = () => {
        next.push({ key: group[0]!.key, pgid: place(branchBytes(group)) })
        stats.branchPages++
        group = []
        gsize = HEADER
      }
      for (const c of level) {
        const add = ELEMENT + c.key.length
        if (group.length > 1 && gsize + add > pageSize) emit()
        group.push(c)
        gsize += add
      }
      emit()
      level = next
    }
    return level[0]!.pgid
  }

  const elemsOf = (t: BoltTree): Array<Elem> =>
    [...t.entries()]
      .map(([k, v]): Elem => {
        const key = Buffer.from(k)
        if (v instanceof Map) return { key, value: bucketValue(v), flags: 1 }
        return { key, value: Buffer.from(v), flags: 0 }
      })
      .sort((a, b) => Buffer.compare(a.key, b.key))

  /** Bolt's rule: a bucket without sub-buckets whose page fits in a quarter page is stored inline. */
  const bucketValue = (t: BoltTree): Buffer => {
    const elems = elemsOf(t)
    const header = Buffer.alloc(16)
    const page = leafBytes(elems)
    if (elems.every((e) => e.flags === 0) && 16 + page.length <= pageSize / 4) {
      stats.inlineBuckets++
      return Buffer.concat([header, page])
    }
    stats.pagedBuckets++
    header.writeBigUInt64LE(BigInt(writeTree(elems)), 0)
    return header
  }

  const rootPage = (t: BoltTree) => writeTree(elemsOf(t))
  const oldRoot = options.previous === undefined ? undefined : rootPage(options.previous)
  const root = rootPage(tree)
  const pgid = 3 + pages.reduce((n, p) => n + p.length / pageSize, 0)

  const meta = (id: number, txid: number, rootId: number) => {
    const p = Buffer.alloc(pageSize)
    p.writeBigUInt64LE(BigInt(id), 0)
    p.writeUInt16LE(META, 8)
    const m = HEADER
    p.writeUInt32LE(MAGIC, m)
    p.writeUInt32LE(2, m + 4)
    p.writeUInt32LE(pageSize, m + 8)
    p.writeBigUInt64LE(BigInt(rootId), m + 16)
    p.writeBigUInt64LE(2n, m + 32) // freelist page
    p.writeBigUInt64LE(BigInt(pgid), m + 40)
    p.writeBigUInt64LE(BigInt(txid), m + 48)
    p.writeBigUInt64LE(fnv1a64(p.subarray(m, m + 56)), m + 56)
    return p
  }
  const freelist = Buffer.alloc(pageSize)
  freelist.writeBigUInt64LE(2n, 0)
  freelist.writeUInt16LE(FREELIST, 8)
  // Bolt writes meta txid%2: the newer tree's meta is page 1 here (txid 7), the older page 0 (txid 6).
  const bytes = Buffer.concat([meta(0, 6, oldRoot ?? root), meta(1, 7, root), freelist, ...pages])
  stats.pages = pgid
  return { bytes, stats }
}

/** Offset of meta page `n`'s fields (for corrupting them in tests). */
export const metaOffset = (n: 0 | 1, pageSize = 4096) => n * pageSize + HEADER
