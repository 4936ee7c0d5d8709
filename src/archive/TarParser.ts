// The one reading of a layer's tar stream: a synchronous push parser over uncompressed tar bytes.
// Each entry comes out fully resolved (PAX `x` over GNU `L`/`K` over ustar prefix/name), or the
// layer is refused with a LayerRefused naming the entry — for malformed headers, truncation, and
// for everything two tar readers could read differently: PAX values holding a newline or NUL, a
// global header (`g`) that would change entries, an `L` name and a PAX `path` that disagree (`K` and
// `linkpath` likewise), two extended headers for one entry, data after the end-of-archive marker,
// sparse and unknown entry types. Path limits (PathRules.ts) are applied here, in O(length), so a
// hostile name costs nothing downstream. Memory is bounded: a header block plus one extended header
// (MAX_META), whatever the archive's size.
import { LayerRefused } from "../domain/ArchiveErrors.js"
import { sizeProblem, splitPath } from "./PathRules.js"
import type { EntryKind, TarEntry } from "./TarEntry.js"
import { Bad, BLOCK, checksumOk, cstring, format, isZero, number, paxInteger, paxRecords, paxTime, text } from "./TarHeader.js"

export type { EntryKind, TarEntry } from "./TarEntry.js"

export interface TarSink {
  /** May throw; the throw propagates out of write(). */
  entry(e: TarEntry): void
  /** The current file entry's content, in order (the chunk is only valid during the call). */
  data(chunk: Buffer): void
  entryEnd(): void
}

/** Largest PAX extended header (`x` or `g`) read; nothing legitimate comes near it. */
export const MAX_META = 1 << 20
const MAX_ID = 0xffffffff
/** Largest |time| a JavaScript Date (and so every consumer) holds: year 275760. */
const MAX_TIME = 8.64e12

const KINDS: Record<string, EntryKind> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "dir",
  "6": "fifo"
}

/** PAX keys that change an entry: a global header may not set them, an entry header sets each once. */
const APPLIED = new Set(["path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime"])

type State =
  | { readonly k: "header" }
  | { readonly k: "data"; left: number; pad: number }
  | { readonly k: "meta"; readonly type: string; readonly body: Buffer; got: number; pad: number }
  | { readonly k: "end" }

/** What extended headers said about the next entry. */
interface Pending {
  pax: Map<string, string> | undefined
  longName: string | undefined
  longLink: string | undefined
}

const noPending = (): Pending => ({ pax: undefined, longName: undefined, longLink: undefined })

export class TarParser {
  private state: State = { k: "header" }
  private readonly block = Buffer.alloc(BLOCK)
  private fill = 0
  private pending: Pending = noPending()
  private failure: unknown = undefined
  private offset = 0
  private entryName = ""
  /** Entries yielded so far. */
  entries = 0
  /** Offset in the tar stream of the current entry's content (after its header). */
  dataOffset = 0

  constructor(
    private readonly sink: TarSink,
    private readonly label: string
  ) {}

  /** Bytes of the tar stream consumed so far. */
  get position(): number {
    return this.offset
  }

  private refuse(reason: string, entry = this.entryName): never {
    throw new LayerRefused({ layer: this.label, entry, reason })
  }

  write(chunk: Buffer): void {
    if (this.failure !== undefined) throw this.failure
    try {
      this.consume(chunk)
    } catch (e) {
      this.failure = e instanceof Bad ? new LayerRefused({ layer: this.label, entry: this.entryName, reason: e.message }) : e
      throw this.failure
    }
  }

  end(): void {
    if (this.failure !== undefined) throw this.failure
    const s = this.state
    let problem: string | undefined
    if (this.fill > 0 && this.offset === this.fill && compressed(this.block) !== "") problem = `not a tar archive${compressed(this.block)}`
    else if (s.k === "data" || s.k === "meta" || this.fill > 0) problem = "truncated archive"
    else if (this.pending.pax !== undefined || this.pending.longName !== undefined || this.pending.longLink !== undefined)
      problem = "extended header without an entry (truncated archive)"
    if (problem !== undefined) {
      this.failure = new LayerRefused({ layer: this.label, entry: s.k === "data" ? this.entryName : "", reason: problem })
      throw this.failure
    }
    this.state = { k: "end" }
  }

  private consume(chunk: Buffer): void {
    let i = 0
    while (i < chunk.length) {
      const s = this.state
      if (s.k === "end") {
        if (!isZero(chunk, i)) this.refuse("data after the end-of-archive marker", "")
        this.offset += chunk.length - i
        return
      }
      if (s.k === "data") {
        if (s.left > 0) {
          const n = Math.min(s.left, chunk.length - i)
          s.left -= n
          this.offset += n
          this.sink.data(chunk.subarray(i, i + n))
          i += n
          if (s.left === 0) {
            this.sink.entryEnd()
            if (s.pad === 0) this.state = { k: "header" }
          }
          continue
        }
        const n = Math.min(s.pad, chunk.length - i)
        s.pad -= n
        this.offset += n
        i += n
        if (s.pad === 0) this.state = { k: "header" }
        continue
      }
      if (s.k === "meta") {
        if (s.got < s.body.length) {
          const n = Math.min(s.body.length - s.got, chunk.length - i)
          chunk.copy(s.body, s.got, i, i + n)
          s.got += n
          this.offset += n
          i += n
          if (s.got === s.body.length && s.pad === 0) this.meta(s.type, s.body)
          continue
        }
        const n = Math.min(s.pad, chunk.length - i)
        s.pad -= n
        this.offset += n
        i += n
        if (s.pad === 0) this.meta(s.type, s.body)
        continue
      }
      const n = Math.min(BLOCK - this.fill, chunk.length - i)
      chunk.copy(this.block, this.fill, i, i + n)
      this.fill += n
      this.offset += n
      i += n
      if (this.fill === BLOCK) {
        this.fill = 0
        this.header(this.block)
      }
    }
  }

  /** A complete extended header body. */
  private meta(type: string, body: Buffer): void {
    this.state = { k: "header" }
    const p = this.pending
    if (type === "g") {
      for (const r of paxRecords(body)) {
        if (APPLIED.has(r.key) || r.key.startsWith("GNU.sparse."))
          this.refuse(`a global PAX header sets ${r.key}, which would change the entries after it`, "")
      }
    } else if (type === "x") {
      if (p.pax !== undefined) this.refuse("two PAX headers for one entry", "")
      const pax = new Map<string, string>()
      for (const r of paxRecords(body)) {
        if (r.key.startsWith("GNU.sparse.")) this.refuse("GNU sparse files are not supported", "")
        if (!APPLIED.has(r.key)) continue // comments, xattrs, ctime, charsets: read by nobody here
        if (pax.has(r.key)) this.refuse(`PAX ${r.key} given twice`, "")
        const v = text(r.value, `PAX ${r.key}`)
        if (v === "") this.refuse(`PAX ${r.key} is empty`, "")
        pax.set(r.key, v)
      }
      p.pax = pax
    } else {
      const end = body.indexOf(0)
      const name = text(body.subarray(0, end < 0 ? body.length : end), "GNU long name")
      if (end >= 0 && !isZero(body, end)) this.refuse("GNU long name has data after its end", "")
      if (name === "") this.refuse("empty GNU long name", "")
      if (type === "L") {
        if (p.longName !== undefined) this.refuse("two GNU long names for one entry", "")
        p.longName = name
      } else {
        if (p.longLink !== undefined) this.refuse("two GNU long link names for one entry", "")
        p.longLink = name
      }
    }
  }

  private header(b: Buffer): void {
    this.entryName = ""
    if (isZero(b)) {
      if (this.pending.pax !== undefined || this.pending.longName !== undefined || this.pending.longLink !== undefined)
        this.refuse("extended header without an entry", "")
      this.state = { k: "end" }
      return
    }
    if (!checksumOk(b)) {
      const at = this.offset - BLOCK
      this.refuse(at === 0 ? `not a tar archive${compressed(b)}` : `bad header checksum at offset ${at}`, "")
    }
    format(b)
    const flag = String.fromCharCode(b[156]!)
    const size = number(b, 124, 12, "size")
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      const max = flag === "L" || flag === "K" ? 4097 : MAX_META
      if (size > max) this.refuse(`${flag === "L" || flag === "K" ? "GNU long name" : "PAX header"} of ${size} bytes (at most ${max})`, "")
      const body = Buffer.alloc(size)
      const pad = (BLOCK - (size % BLOCK)) % BLOCK
      if (size === 0) this.meta(flag, body)
      else this.state = { k: "meta", type: flag, body, got: 0, pad }
      return
    }
    this.entry(b, flag, size)
  }

  private entry(b: Buffer, flag: string, size: number): void {
    const p = this.pending
    this.pending = noPending()
    const fmt = format(b)
    let name = cstring(b, 0, 100)
    if (fmt === "ustar" && b[345] !== 0) name = Buffer.concat([cstring(b, 345, 155), Buffer.from("/"), name])
    const headerName = text(name, "name")
    const paxPath = p.pax?.get("path")
    this.entryName = paxPath ?? p.longName ?? headerName
    if (paxPath !== undefined && p.longName !== undefined && paxPath !== p.longName)
      this.refuse(`GNU long name ${JSON.stringify(p.longName.slice(0, 100))} and PAX path disagree`)
    const kind = KINDS[flag]
    if (kind === undefined)
      this.refuse(flag === "S" ? "GNU sparse files are not supported" : `unsupported entry type ${JSON.stringify(flag)}`)
    const paxLink = p.pax?.get("linkpath")
    if (paxLink !== undefined && p.longLink !== undefined && paxLink !== p.longLink)
      this.refuse("GNU long link name and PAX linkpath disagree")
    const isLink = kind === "symlink" || kind === "hardlink"
    const linkpath = isLink ? (paxLink ?? p.longLink ?? text(cstring(b, 157, 100), "link name")) : ""
    if (!isLink && (paxLink !== undefined || p.longLink !== undefined)) this.refuse(`a link name on a ${kind} entry`)
    const pax = p.pax
    const realSize = pax?.has("size") ? paxInteger(pax.get("size")!, "size") : size
    // Header fields are checked even when PAX replaces them, as GNU tar does (it fails on a bad one).
    const [hUid, hGid, hMtime] = [number(b, 108, 8, "uid"), number(b, 116, 8, "gid"), number(b, 136, 12, "mtime", true)]
    if (hUid > MAX_ID || hGid > MAX_ID) this.refuse("uid or gid out of range")
    const uid = pax?.has("uid") ? paxInteger(pax.get("uid")!, "uid", MAX_ID) : hUid
    const gid = pax?.has("gid") ? paxInteger(pax.get("gid")!, "gid", MAX_ID) : hGid
    const e: TarEntry = {
      path: this.entryName,
      kind,
      mode: number(b, 100, 8, "mode") & 0o7777,
      uid,
      gid,
      uname: pax?.get("uname") ?? text(cstring(b, 265, 32), "uname"),
      gname: pax?.get("gname") ?? text(cstring(b, 297, 32), "gname"),
      mtime: pax?.has("mtime") ? paxTime(pax.get("mtime")!, "mtime") : hMtime,
      atime: pax?.has("atime") ? paxTime(pax.get("atime")!, "atime") : undefined,
      size: kind === "file" ? realSize : 0,
      linkpath
    }
    if (Math.abs(e.mtime) > MAX_TIME || Math.abs(e.atime ?? 0) > MAX_TIME) this.refuse("time stamp beyond the year 275760")
    if (kind !== "file" && realSize !== 0) this.refuse(`a ${kind} entry with ${realSize} bytes of data`)
    if (kind !== "dir" && e.path.endsWith("/")) this.refuse(`a ${kind} entry whose name ends with "/"`)
    const bad = pathProblem(e)
    if (bad !== undefined) this.refuse(bad)
    this.entries++
    this.dataOffset = this.offset
    this.sink.entry(e)
    if (e.size === 0) {
      this.sink.entryEnd()
      this.state = { k: "header" }
    } else this.state = { k: "data", left: e.size, pad: (BLOCK - (e.size % BLOCK)) % BLOCK }
  }
}

/** What a block that should be a tar header is instead, when it is compressed data, for the message. */
const compressed = (b: Buffer): string =>
  b[0] === 0x1f && b[1] === 0x8b ? " (a gzip stream inside the gzip)" : b.readUInt32BE(0) === 0x28b52ffd ? " (zstd data)" : ""

/** The path rules every reader applies to an entry (PathRules.ts), or undefined when it passes. */
export const pathProblem = (e: TarEntry): string | undefined => {
  const path = splitPath(e.path, "path")
  if (typeof path === "string") return path
  if (path.parts.length === 0 && e.kind !== "dir") return "empty path"
  if (e.kind === "symlink") return e.linkpath === "" ? "empty symbolic link target" : sizeProblem(e.linkpath, "symbolic link target")
  if (e.kind === "hardlink") {
    const target = splitPath(e.linkpath, "hard link target")
    if (typeof target === "string") return target
    if (target.parts.length === 0) return "hard link to the root directory"
  }
  return undefined
}
