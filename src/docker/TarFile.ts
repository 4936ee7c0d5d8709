// Tar files on disk: the index of a layer (headers, read by the agents' strict reader) records where
// each entry's bytes are, so re-packing can copy any entry's data later by position — including the
// target of a hard link that must become a regular file (Repack.ts). Layers are untrusted: whatever
// an agent would refuse (src/archive) is an error here, not a guess.
import { Effect } from "effect"
import { createReadStream } from "node:fs"
import * as tar from "tar"
import { splitPath } from "../archive/PathRules.js"
import { TarParser, type TarEntry as Parsed } from "../archive/TarParser.js"
import { LayerRefused } from "../domain/ArchiveErrors.js"
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

const kinds: Record<Parsed["kind"], EntryKind> = {
  file: "File",
  hardlink: "Link",
  symlink: "SymbolicLink",
  dir: "Directory",
  chardev: "CharacterDevice",
  blockdev: "BlockDevice",
  fifo: "FIFO"
}

const BLOCK = 512

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK

/**
 * Reads every header of the (uncompressed) tar file at `file` with the agents' reader
 * (src/archive/TarParser.ts): what it refuses, the importer refuses, so it never makes a layer
 * agents refuse. `label` prefixes error messages ("layer 2"). Memory grows with the number of
 * entries, never with their size.
 */
export const readIndex = (file: string, label: string): Effect.Effect<Array<TarEntry>, ArchiveError> =>
  Effect.tryPromise({
    try: async () => {
      const entries: Array<TarEntry> = []
      const parser = new TarParser(
        {
          entry: (e) => {
            const path = splitPath(e.path, "path")
            const link = e.kind === "hardlink" ? splitPath(e.linkpath, "hard link target") : undefined
            // The parser applied these rules already; they only normalise here.
            if (typeof path === "string" || typeof link === "string") throw new ArchiveError({ message: `${label}: ${path}` })
            entries.push({
              path: path.parts.join("/"),
              kind: kinds[e.kind],
              linkpath: link !== undefined ? link.parts.join("/") : e.linkpath,
              mode: e.mode,
              uid: e.uid,
              gid: e.gid,
              uname: e.uname,
              gname: e.gname,
              mtime: new Date(e.mtime * 1000),
              size: e.size,
              devmaj: 0, // device nodes are never unpacked by agents
              devmin: 0,
              dataOffset: parser.dataOffset
            })
          },
          data: () => {},
          entryEnd: () => {}
        },
        label.replace(/^layer /, "")
      )
      for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) parser.write(chunk)
      parser.end()
      return entries
    },
    catch: (e) =>
      e instanceof ArchiveError ? e
      : e instanceof LayerRefused ? new ArchiveError({ message: e.message })
      : new ArchiveError({ message: `${label}: cannot read: ${(e as Error).message}` })
  })

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
