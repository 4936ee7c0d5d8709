// Tar files on disk, read by position: the index of a layer (headers only, data skipped by seeking)
// records where each entry's bytes are, so re-packing can copy any entry's data later — including
// the target of a hard link that must become a regular file (Repack.ts). Layers are untrusted:
// bad checksums, paths escaping the root and unknown entry types are errors, not guesses.
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as tar from "tar"
import { ArchiveError } from "../domain/DockerErrors.js"

export type EntryKind = "File" | "Link" | "SymbolicLink" | "Directory" | "CharacterDevice" | "BlockDevice" | "FIFO"

export interface TarEntry {
  /** Normalized: no leading `/` or `./`, no trailing `/`, no `.` or `..` segments. */
  readonly path: string
  readonly kind: EntryKind
  /** Link: the normalized path of the target; SymbolicLink: the target as written; otherwise "". */
  readonly linkpath: string
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly uname: string
  readonly gname: string
  readonly mtime: Date
  /** Bytes of data (File only; 0 otherwise). */
  readonly size: number
  readonly devmaj: number
  readonly devmin: number
  /** Offset of the data in the tar file. */
  readonly dataOffset: number
}

/** `./a//b/` → `a/b`; undefined when a `..` segment could climb out of the root. "" is the root. */
export const normalizePath = (p: string): string | undefined => {
  const out: Array<string> = []
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue
    if (seg === "..") return undefined
    out.push(seg)
  }
  return out.join("/")
}

const kinds: Record<string, EntryKind> = {
  File: "File",
  OldFile: "File",
  ContiguousFile: "File",
  Link: "Link",
  SymbolicLink: "SymbolicLink",
  Directory: "Directory",
  CharacterDevice: "CharacterDevice",
  BlockDevice: "BlockDevice",
  FIFO: "FIFO"
}

const BLOCK = 512
/** pax and GNU long-name bodies are read whole; nothing legitimate comes near this. */
const MAX_META = 1 << 20

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK

const readExactly = async (fh: fs.FileHandle, length: number, position: number): Promise<Buffer | undefined> => {
  const buf = Buffer.alloc(length)
  let got = 0
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got)
    if (bytesRead === 0) return got === 0 ? undefined : buf.subarray(0, got)
    got += bytesRead
  }
  return buf
}

/**
 * Reads every header of the tar file at `file`. `label` prefixes error messages ("layer 2").
 * Memory grows with the number of entries, never with their size.
 */
export const readIndex = (file: string, label: string): Effect.Effect<Array<TarEntry>, ArchiveError> =>
  Effect.tryPromise({
    try: async () => {
      const fh = await fs.open(file, "r")
      try {
        return await indexOpen(fh, label)
      } finally {
        await fh.close()
      }
    },
    catch: (e) => (e instanceof ArchiveError ? e : new ArchiveError({ message: `${label}: cannot read: ${(e as Error).message}` }))
  })

const indexOpen = async (fh: fs.FileHandle, label: string): Promise<Array<TarEntry>> => {
  const bad = (what: string) => new ArchiveError({ message: `${label}: ${what}` })
  const entries: Array<TarEntry> = []
  const { size: fileSize } = await fh.stat()
  let pos = 0
  let ex: tar.HeaderData | undefined
  let gex: tar.HeaderData | undefined
  for (;;) {
    const block = await readExactly(fh, BLOCK, pos)
    // A missing end-of-archive marker is tolerated (some writers stop at the last entry).
    if (block === undefined) break
    if (block.length < BLOCK) throw bad("truncated tar header")
    if (block.every((b) => b === 0)) break
    const h = new tar.Header(block, 0, ex, gex)
    if (!h.cksumValid) throw bad(`not a tar archive (bad header checksum at offset ${pos})`)
    const size = h.size ?? 0
    const dataOffset = pos + BLOCK
    if (dataOffset + size > fileSize) throw bad("truncated tar entry")
    pos = dataOffset + padded(size)
    const type = h.type
    if (type === "ExtendedHeader" || type === "GlobalExtendedHeader" || type === "NextFileHasLongPath" ||
      type === "OldGnuLongPath" || type === "NextFileHasLongLinkpath") {
      if (size > MAX_META) throw bad(`${type} header too large`)
      const body = ((await readExactly(fh, size, dataOffset)) ?? Buffer.alloc(0)).toString("utf8")
      if (type === "ExtendedHeader") ex = tar.Pax.parse(body, ex, false)
      else if (type === "GlobalExtendedHeader") gex = tar.Pax.parse(body, gex, true)
      else if (type === "NextFileHasLongLinkpath") ex = { ...ex, linkpath: body.replace(/\0.*/s, "") }
      else ex = { ...ex, path: body.replace(/\0.*/s, "") }
      continue
    }
    const kind = kinds[type]
    if (kind === undefined) throw bad(`unsupported tar entry type ${type} (${h.path ?? ""})`)
    // tar's Header re-reads these from the block after applying pax/GNU overrides: the overrides win.
    const rawPath = ex?.path ?? h.path ?? ""
    const rawLink = ex?.linkpath ?? h.linkpath ?? ""
    ex = undefined
    const path = normalizePath(rawPath)
    if (path === undefined) throw bad(`entry path escapes the root: ${rawPath}`)
    let linkpath = rawLink
    if (kind === "Link") {
      const target = normalizePath(rawLink)
      if (target === undefined || target === "") throw bad(`hard link target escapes the root: ${rawLink}`)
      linkpath = target
    }
    entries.push({
      path,
      kind,
      linkpath: kind === "Link" || kind === "SymbolicLink" ? linkpath : "",
      mode: (h.mode ?? 0o644) & 0o7777,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      uname: h.uname ?? "",
      gname: h.gname ?? "",
      mtime: h.mtime ?? new Date(0),
      size: kind === "File" ? size : 0,
      devmaj: h.devmaj ?? 0,
      devmin: h.devmin ?? 0,
      dataOffset
    })
  }
  return entries
}

/** Header block(s) for `entry` written at `path` as `kind` with `size` bytes: a pax header first when needed. */
export const encodeHeader = (entry: TarEntry, kind: EntryKind, size: number): Buffer => {
  const data: tar.HeaderData = {
    path: kind === "Directory" ? `${entry.path}/` : entry.path,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    size,
    mtime: entry.mtime,
    type: kind,
    linkpath: kind === "Link" || kind === "SymbolicLink" ? entry.linkpath : "",
    uname: entry.uname,
    gname: entry.gname,
    devmaj: entry.devmaj,
    devmin: entry.devmin
  }
  const header = new tar.Header(data)
  header.encode()
  if (!header.needPax) return header.block!
  const pax = new tar.Pax({
    path: data.path,
    linkpath: data.linkpath || undefined,
    size,
    uid: entry.uid,
    gid: entry.gid,
    uname: entry.uname || undefined,
    gname: entry.gname || undefined,
    mtime: entry.mtime
  }).encode()
  return Buffer.concat([pax, header.block!])
}

/** Zero bytes that pad `size` bytes of data up to a whole block. */
export const padding = (size: number): Buffer => Buffer.alloc(padded(size) - size)

/** The end-of-archive marker: two zero blocks. */
export const endOfArchive = (): Buffer => Buffer.alloc(2 * BLOCK)
