// Builds tar.gz archives byte by byte, so tests can make entries GNU tar refuses to create
// (`../x`, absolute paths, links out of the tree, device nodes, setuid files).
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { gzipSync } from "node:zlib"

export type EntryType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo"

export interface EntrySpec {
  readonly path: string
  readonly type?: EntryType
  readonly content?: string | Buffer
  readonly linkpath?: string
  readonly mode?: number
  /** Seconds since the epoch; a negative one goes in a PAX `mtime` record, as GNU tar writes it. */
  readonly mtime?: number
  readonly uid?: number
  readonly gid?: number
}

const typeFlag: Record<EntryType, string> = { file: "0", link: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" }

const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, "0") + "\0"

const header = (
  name: string,
  flag: string,
  size: number,
  opts: { linkpath?: string; mode: number; mtime: number; uid?: number; gid?: number }
): Buffer => {
  const b = Buffer.alloc(512)
  b.write(name, 0, 100, "utf8")
  b.write(octal(opts.mode, 8), 100, "ascii")
  b.write(octal(opts.uid ?? 1000, 8), 108, "ascii")
  b.write(octal(opts.gid ?? 1000, 8), 116, "ascii")
  b.write(octal(size, 12), 124, "ascii")
  b.write(octal(Math.max(0, opts.mtime), 12), 136, "ascii")
  b.write("        ", 148, "ascii")
  b.write(flag, 156, "ascii")
  if (opts.linkpath) b.write(opts.linkpath, 157, 100, "utf8")
  b.write("ustar\0", 257, "ascii")
  b.write("00", 263, "ascii")
  b.write("user", 265, "ascii")
  b.write("group", 297, "ascii")
  let sum = 0
  for (const byte of b) sum += byte
  b.write(octal(sum, 7) + " ", 148, "ascii")
  return b
}

const pad = (buf: Buffer) => Buffer.concat([buf, Buffer.alloc((512 - (buf.length % 512)) % 512)])

const paxRecord = (key: string, value: string) => {
  const body = ` ${key}=${value}\n`
  let len = body.length + 1
  while (String(len).length + body.length !== len) len = String(len).length + body.length
  return `${len}${body}`
}

/** A raw (uncompressed) tar of the entries, in order, with PAX headers for long names. */
export const tarBytes = (entries: ReadonlyArray<EntrySpec>): Buffer => {
  const parts: Array<Buffer> = []
  for (const e of entries) {
    const type = e.type ?? "file"
    const content = type === "file" ? Buffer.from(e.content ?? "") : Buffer.alloc(0)
    const mode = e.mode ?? (type === "dir" ? 0o755 : type === "symlink" ? 0o777 : 0o644)
    const mtime = e.mtime ?? 1_600_000_000
    const long = Buffer.byteLength(e.path) > 99 || (e.linkpath !== undefined && Buffer.byteLength(e.linkpath) > 99)
    if (long || mtime < 0) {
      let pax = long ? paxRecord("path", e.path) : ""
      if (long && e.linkpath !== undefined) pax += paxRecord("linkpath", e.linkpath)
      if (mtime < 0) pax += paxRecord("mtime", String(mtime))
      const data = Buffer.from(pax)
      parts.push(header("PaxHeader", "x", data.length, { mode: 0o644, mtime }), pad(data))
    }
    const ids = { ...(e.uid !== undefined ? { uid: e.uid } : {}), ...(e.gid !== undefined ? { gid: e.gid } : {}) }
    parts.push(header(e.path.slice(0, 99), typeFlag[type], content.length, { mode, mtime, ...ids, ...(e.linkpath ? { linkpath: e.linkpath.slice(0, 99) } : {}) }))
    if (content.length > 0) parts.push(pad(content))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

export const tarGz = (entries: ReadonlyArray<EntrySpec>): Buffer => gzipSync(tarBytes(entries))

export const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex")

/** Writes a tar.gz to `dir/name` and returns its path and sha256. */
export const writeArchive = async (dir: string, name: string, entries: ReadonlyArray<EntrySpec>) => {
  const bytes = tarGz(entries)
  const file = path.join(dir, name)
  await fs.writeFile(file, bytes)
  return { file, hash: sha256(bytes), bytes }
}

/**
 * Every path under `root` with its kind, link target and content, for comparing trees; with `owners`,
 * uid:gid too; times at or after `now` (seconds) show as "now" (set by the extraction, not the archive).
 */
export const snapshot = async (root: string, o: { owners?: boolean; now?: number } = {}): Promise<Record<string, string>> => {
  const out: Record<string, string> = {}
  const time = (ms: number) => (o.now !== undefined && ms >= o.now * 1000 ? "now" : String(Math.floor(ms / 1000)))
  const walk = async (rel: string) => {
    const abs = rel === "" ? root : path.join(root, rel)
    const st = await fs.lstat(abs)
    const mode = (st.mode & 0o7777).toString(8)
    const own = o.owners ? ` ${st.uid}:${st.gid}` : ""
    if (st.isSymbolicLink()) out[rel || "."] = `symlink -> ${await fs.readlink(abs)}${own}${o.owners ? ` ${time(st.mtimeMs)}` : ""}`
    else if (st.isDirectory()) {
      if (rel !== "" || o.owners) out[rel || "."] = `dir ${mode} ${time(st.mtimeMs)}${own}`
      for (const n of (await fs.readdir(abs)).sort()) await walk(rel === "" ? n : `${rel}/${n}`)
    } else if (st.isFile())
      out[rel] = `file ${mode} ${time(st.mtimeMs)} nlink=${st.nlink} ${sha256(await fs.readFile(abs)).slice(0, 12)}${own}`
    else out[rel] = `other ${st.mode.toString(8)}`
  }
  await walk("")
  return out
}

/** All paths (recursively, not following links) under `dir`, sorted. */
export const listAll = async (dir: string): Promise<Array<string>> => {
  const out: Array<string> = []
  const walk = async (rel: string) => {
    for (const d of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name
      out.push(r)
      if (d.isDirectory()) await walk(r)
    }
  }
  await walk("")
  return out.sort()
}
