// Unpacks a configuration's layers into <dir>/unpacked/<confighash>/ and marks it complete with
// <confighash>.ok. Every archive is hostile: nothing may be created, overwritten or modified
// outside the tree. We parse with tar's Parser and write with our own fs calls, keeping an
// in-memory model of every path we created, so that paths are resolved like a chroot would
// (symlinks are followed *inside* the tree, `..` in link targets is clamped at the root) and the
// kernel is never asked to follow a link: every path we hand it consists of directories we made,
// and the last component is opened with O_NOFOLLOW|O_EXCL after unlinking what was there.
// The parser's events decide; the file-system calls run in the same order on a worker thread
// (TreeWriter.ts), overlapping with the parsing: 20k small files stay close to GNU tar's speed.
import { Context, Effect, Layer } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import * as tar from "tar"
import * as zlib from "node:zlib"
import { UnpackError, UnsafeArchive } from "../domain/AgentErrors.js"
import { fsyncDir, writeFileAtomic } from "../fs/Atomic.js"
import { AgentConfig } from "./AgentConfig.js"
import { AgentLog, type Level } from "./AgentLog.js"
import { OpFailed, type Refusals, TreeWriter } from "./TreeWriter.js"

export interface LayerFile {
  /** How the layer is named in messages, e.g. `code@v01`. */
  readonly label: string
  /** Path of the (gzip'd) tar archive. */
  readonly file: string
}

export interface ExtractOptions {
  readonly keepSuid: boolean
  readonly log: (level: Level, message: string) => void
}

type Node = { readonly kind: "dir" } | { readonly kind: "file" } | { readonly kind: "symlink"; readonly target: string }

interface DirMeta {
  readonly abs: string
  readonly mode: number
  readonly mtime: Date | undefined
  readonly uid: number | undefined
  readonly gid: number | undefined
}

const DIR: Node = { kind: "dir" }
const FILE: Node = { kind: "file" }
const MAX_LINK_HOPS = 40
const { O_NOFOLLOW } = fs.constants
const S_ISGID = 0o2000
/** zlib output chunk: fewer thread-pool round trips, and fewer files split across two chunks. */
const INFLATE_CHUNK = 256 * 1024

/** A refusal raised from inside the synchronous entry handlers. */
class Refused extends Error {
  constructor(
    readonly entry: string,
    readonly reason: string
  ) {
    super(reason)
  }
}

const NOT_EMPTY: Refusals = { ENOTEMPTY: "cannot replace a non-empty directory", EEXIST: "cannot replace a non-empty directory" }
const seconds = (d: Date) => d.getTime() / 1000

/** The extraction state shared by all layers of one tree. */
class Extractor {
  private readonly nodes = new Map<string, Node>([["", DIR]])
  /** Raw parent path -> resolved directory key; only dirs are cached, cleared when a dir or link goes away. */
  private readonly resolved = new Map<string, string>()
  private readonly umask = process.umask()
  private readonly isRoot = process.getuid?.() === 0
  /** Owner a new file gets from open(2); an entry with exactly that owner needs no fchown. */
  private readonly euid = process.geteuid?.() ?? -1
  private readonly egid = process.getegid?.() ?? -1
  /** A setgid directory in the tree hands its group to new files: then every owner is set explicitly. */
  private setgidDirs: boolean
  /** One clock reading per layer for the atime we must pass with the mtime (tar's entries rarely carry one). */
  private now = new Date()
  readonly written: Array<string> = []
  private layerDirs = new Map<string, DirMeta>()
  private label = ""
  private entryName = ""

  constructor(
    private readonly root: string,
    private readonly opts: ExtractOptions
  ) {
    this.setgidDirs = (fs.statSync(root).mode & S_ISGID) !== 0
    this.w = new TreeWriter() // last: nothing may throw after the worker exists
  }

  /** Executes the file-system calls (in order, on a worker thread). */
  private readonly w: TreeWriter

  /** Stops the writer; after this no file of this extraction is created any more. */
  close(): Promise<void> {
    return this.w.close()
  }

  /** Whether a new file (owned by our euid/egid) must be chowned to the entry's owner. */
  private needsChown(uid: number | undefined, gid: number | undefined): boolean {
    return this.isRoot && uid !== undefined && gid !== undefined && (uid !== this.euid || gid !== this.egid || this.setgidDirs)
  }

  private abs(key: string): string {
    return key === "" ? this.root : this.root + "/" + key
  }

  private refuse(reason: string): never {
    throw new Refused(this.entryName, reason)
  }

  /**
   * Resolves directory components chroot-style and returns the key of the directory they name.
   * Missing directories are created (as tar does) when `create`; otherwise undefined is returned.
   */
  private resolveDir(parts: ReadonlyArray<string>, create: boolean): string | undefined {
    const raw = parts.join("/")
    const hit = this.resolved.get(raw)
    if (hit !== undefined) return hit
    const stack: Array<string> = []
    const queue = parts.slice()
    let hops = 0
    while (queue.length > 0) {
      const c = queue.shift()!
      if (c === "" || c === ".") continue
      if (c === "..") {
        stack.pop() // clamped at the root: a chroot's `/..` is `/`
        continue
      }
      const key = stack.length === 0 ? c : stack.join("/") + "/" + c
      const node = this.nodes.get(key)
      if (node === undefined) {
        if (!create) return undefined
        this.w.push(this.entryName, { k: "mkdir", path: this.abs(key), mode: 0o755 })
        this.nodes.set(key, DIR)
        stack.push(c)
      } else if (node.kind === "dir") {
        stack.push(c)
      } else if (node.kind === "symlink") {
        if (++hops > MAX_LINK_HOPS) this.refuse("too many levels of symbolic links")
        if (node.target.startsWith("/")) stack.length = 0
        queue.unshift(...node.target.split("/"))
      } else {
        this.refuse(`${key} is not a directory`)
      }
    }
    const dir = stack.join("/")
    if (create) this.resolved.set(raw, dir)
    return dir
  }

  /** Makes room for a new entry at `key` the way GNU tar does: unlink files and links, rmdir empty dirs. */
  private clear(key: string, keepDir: boolean): Node | undefined {
    const node = this.nodes.get(key)
    if (node === undefined) return undefined
    if (node.kind === "dir") {
      if (keepDir) return node
      if (key === "") this.refuse("cannot replace the root directory")
      this.w.push(this.entryName, { k: "rmdir", path: this.abs(key) }, NOT_EMPTY)
      this.resolved.clear()
    } else {
      this.w.push(this.entryName, { k: "unlink", path: this.abs(key) })
      if (node.kind === "symlink") this.resolved.clear()
    }
    this.nodes.delete(key)
    return undefined
  }

  private mode(raw: number | undefined, fallback: number): number {
    let mode = (raw ?? fallback) & 0o7777
    if (!this.opts.keepSuid && mode & 0o6000) {
      this.opts.log("warn", `layer ${this.label}: dropped setuid/setgid bits of ${JSON.stringify(this.entryName)}`)
      mode &= ~0o6000
    }
    return mode
  }

  /** Entry path -> [parent dir key, name]; refuses `..`, strips leading `/` (logged once per layer). */
  private split(raw: string, what: string, onAbsolute: () => void): Array<string> {
    if (raw.startsWith("/")) onAbsolute()
    const parts = raw.split("/").filter((c) => c !== "" && c !== ".")
    if (parts.includes("..")) this.refuse(`${what} contains a ".." component`)
    return parts
  }

  /** Extracts one archive; resolves when it is fully written (not yet fsync'd). */
  layer(layer: LayerFile, signal?: AbortSignal): Promise<void> {
    this.label = layer.label
    this.layerDirs = new Map()
    this.now = new Date()
    let warnedAbsolute = false
    const onAbsolute = () => {
      if (warnedAbsolute) return
      warnedAbsolute = true
      this.opts.log("warn", `layer ${layer.label}: removing leading "/" from member names`)
    }
    return new Promise<void>((resolve, reject) => {
      let failed = false
      let gunzip: zlib.Gunzip | undefined
      let entries = 0
      let sawEof = false
      const input = fs.createReadStream(layer.file, { highWaterMark: 1024 * 1024 })
      // Sizes are bounded by the verified blob; a highly compressible layer is legitimate.
      const parser = new tar.Parser({ strict: true, maxDecompressionRatio: Number.POSITIVE_INFINITY })
      const fail = (err: unknown) => {
        if (failed) return
        failed = true
        input.destroy()
        gunzip?.destroy()
        parser.abort(err instanceof Error ? err : new Error(String(err)))
        reject(err)
      }
      parser.on("eof", () => (sawEof = true))
      parser.on("ignoredEntry", (entry: tar.ReadEntry) => {
        if (entry.meta || failed) return
        this.opts.log("warn", `layer ${layer.label}: skipped ${entry.type} entry ${JSON.stringify(entry.path)}`)
      })
      parser.on("entry", (entry: tar.ReadEntry) => {
        if (failed) return void entry.resume()
        entries++
        try {
          this.entry(entry, onAbsolute)
        } catch (e) {
          entry.resume()
          fail(e)
        }
      })
      parser.on("error", (err: Error & { tarCode?: string }) => {
        // An archive with no entries at all (GNU tar's `-T /dev/null`) is valid; tar's Parser calls it unrecognized.
        if (err.tarCode === "TAR_BAD_ARCHIVE" && entries === 0 && sawEof && /Unrecognized/.test(err.message)) return
        fail(new UnpackError({ message: `layer ${layer.label}: ${err.message}` }))
      })
      parser.on("end", () => {
        if (failed) return
        try {
          this.finishLayer()
        } catch (e) {
          return fail(e)
        }
        // Resolved once the worker has done every op of this layer.
        this.w.drain().then(resolve, fail)
      })
      if (signal) {
        if (signal.aborted) return fail(new UnpackError({ message: `layer ${layer.label}: interrupted` }))
        signal.addEventListener("abort", () => fail(new UnpackError({ message: `layer ${layer.label}: interrupted` })), { once: true })
      }
      input.on("error", (err) => fail(new UnpackError({ message: `layer ${layer.label}: cannot read ${layer.file}: ${err.message}` })))
      // Parser input with back-pressure on `from`: from the parser, and from the writer when it is behind.
      // The parser handles a chunk synchronously, so the ops it produced go out as one batch right after.
      const feed = (from: { pause(): unknown; resume(): unknown }) => (chunk: Buffer) => {
        if (failed) return
        if (this.w.failed) return fail(this.w.failed)
        const parserFull = !parser.write(chunk)
        this.w.flush()
        const writerFull = this.w.full()
        if (!parserFull && !writerFull) return
        from.pause()
        let waiting = (parserFull ? 1 : 0) + (writerFull ? 1 : 0)
        const release = () => {
          if (--waiting === 0 && !failed) from.resume()
        }
        if (parserFull) parser.once("drain", release)
        if (writerFull) this.w.whenRoom(release)
      }
      // A gzip'd layer is inflated by zlib on the thread pool, next to the parsing and file writes here
      // (tar's own inflater would run on this thread); a plain tar goes to the parser as is.
      let decided = false
      input.on("data", (data) => {
        const chunk = data as Buffer
        if (failed) return
        if (!decided) {
          decided = true
          if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
            const z = zlib.createGunzip({ chunkSize: INFLATE_CHUNK })
            gunzip = z
            z.on("data", feed(z))
            z.on("error", (err) => fail(new UnpackError({ message: `layer ${layer.label}: gzip: ${err.message}` })))
            z.on("end", () => {
              if (!failed) parser.end()
            })
          }
        }
        if (gunzip === undefined) return feed(input)(chunk)
        if (!gunzip.write(chunk)) {
          input.pause()
          gunzip.once("drain", () => input.resume())
        }
      })
      input.on("end", () => {
        if (failed) return
        if (gunzip !== undefined) gunzip.end()
        else parser.end()
      })
    })
  }

  private entry(entry: tar.ReadEntry, onAbsolute: () => void): void {
    this.entryName = entry.path
    const parts = this.split(entry.path, "path", onAbsolute)
    switch (entry.type) {
      case "Directory":
      case "GNUDumpDir":
        return this.directory(entry, parts)
      case "File":
      case "OldFile":
      case "ContiguousFile":
        return this.file(entry, parts)
      case "SymbolicLink":
        return this.symlink(entry, parts)
      case "Link":
        return this.hardlink(entry, parts, onAbsolute)
      default:
        // Device nodes and FIFOs have no place in a deployed tree (and need privileges).
        this.opts.log("warn", `layer ${this.label}: skipped ${entry.type} entry ${JSON.stringify(entry.path)}`)
        entry.resume()
    }
  }

  /** Parent key and final name of a non-root entry, creating missing parent directories. */
  private place(parts: ReadonlyArray<string>): string {
    if (parts.length === 0) this.refuse("empty path")
    const parent = this.resolveDir(parts.slice(0, -1), true)!
    const name = parts[parts.length - 1]!
    return parent === "" ? name : parent + "/" + name
  }

  private directory(entry: tar.ReadEntry, parts: ReadonlyArray<string>): void {
    const key = parts.length === 0 ? "" : this.place(parts)
    if (this.clear(key, true) === undefined) {
      this.w.push(this.entryName, { k: "mkdir", path: this.abs(key), mode: 0o700 })
      this.nodes.set(key, DIR)
    }
    // Mode and times are applied when the layer ends, so a read-only dir can still be filled.
    const mode = this.mode(entry.mode, 0o755)
    if (mode & S_ISGID) this.setgidDirs = true
    this.layerDirs.set(key, { abs: this.abs(key), mode, mtime: entry.mtime, uid: entry.uid, gid: entry.gid })
    entry.resume()
  }

  private file(entry: tar.ReadEntry, parts: ReadonlyArray<string>): void {
    const key = this.place(parts)
    this.clear(key, false)
    const abs = this.abs(key)
    const mode = this.mode(entry.mode, 0o644)
    const name = this.entryName
    const slot = this.w.slot()
    this.w.push(name, { k: "open", slot, path: abs, mode: mode & 0o777 })
    this.nodes.set(key, FILE)
    this.written.push(abs)
    entry.on("data", (chunk: Buffer) => this.w.write(name, slot, chunk))
    entry.on("end", () =>
      this.w.push(name, {
        k: "close",
        slot,
        ...(this.needsChown(entry.uid, entry.gid) ? { uid: entry.uid!, gid: entry.gid! } : {}),
        // chmod only when the umask changed the mode (or chown dropped set-id bits).
        ...((mode & ~this.umask) !== mode || (this.isRoot && mode & 0o6000) ? { chmod: mode } : {}),
        ...(entry.mtime ? { atime: seconds(entry.atime ?? this.now), mtime: seconds(entry.mtime) } : {})
      })
    )
    entry.resume()
  }

  private symlink(entry: tar.ReadEntry, parts: ReadonlyArray<string>): void {
    const target = entry.linkpath ?? ""
    const key = this.place(parts)
    this.clear(key, false)
    const abs = this.abs(key)
    // The target is stored verbatim: links may point anywhere; we only never follow them out.
    this.w.push(this.entryName, {
      k: "symlink",
      target,
      path: abs,
      ...(this.isRoot && entry.uid !== undefined && entry.gid !== undefined ? { uid: entry.uid, gid: entry.gid } : {}),
      ...(entry.mtime ? { atime: seconds(entry.atime ?? this.now), mtime: seconds(entry.mtime) } : {})
    })
    this.nodes.set(key, { kind: "symlink", target })
    entry.resume()
  }

  private hardlink(entry: tar.ReadEntry, parts: ReadonlyArray<string>, onAbsolute: () => void): void {
    const tparts = this.split(entry.linkpath ?? "", "hard link target", onAbsolute)
    if (tparts.length === 0) this.refuse("hard link to the root directory")
    const tdir = this.resolveDir(tparts.slice(0, -1), false)
    const tkey = tdir === undefined ? undefined : tdir === "" ? tparts[tparts.length - 1]! : tdir + "/" + tparts[tparts.length - 1]!
    if (tkey === undefined || this.nodes.get(tkey)?.kind !== "file")
      this.refuse(`hard link target ${JSON.stringify(entry.linkpath)} is not a regular file inside the tree`)
    const key = this.place(parts)
    if (key !== tkey) {
      this.clear(key, false)
      this.w.push(this.entryName, { k: "link", existing: this.abs(tkey), path: this.abs(key) })
      this.nodes.set(key, FILE)
    }
    entry.resume()
  }

  private finishLayer(): void {
    const now = seconds(new Date())
    for (const [key, d] of this.layerDirs) {
      this.w.push(key, {
        k: "dir",
        path: d.abs,
        mode: d.mode,
        ...(this.isRoot && d.uid !== undefined && d.gid !== undefined ? { uid: d.uid, gid: d.gid } : {}),
        ...(d.mtime ? { atime: now, mtime: seconds(d.mtime) } : {})
      })
    }
    this.layerDirs = new Map()
  }

  /** Every directory key we know, for the fsync fallback. */
  dirs(): Array<string> {
    const out: Array<string> = []
    for (const [k, n] of this.nodes) if (n.kind === "dir") out.push(this.abs(k))
    return out
  }
}

/** Flushes the tree to disk before the .ok marker is written. */
const syncTree = async (root: string, files: ReadonlyArray<string>, dirs: ReadonlyArray<string>): Promise<void> => {
  const all = [...files, ...dirs]
  // A few files: fsync each. Many: one syncfs beats thousands of fsyncs (it also flushes whatever
  // else is dirty on that filesystem, which is why small trees don't use it).
  if (all.length > 256) {
    const viaSyncfs = await new Promise<boolean>((resolve) => execFile("sync", ["-f", root], (err) => resolve(err === null)))
    if (viaSyncfs) return
  }
  const batch = 64
  for (let i = 0; i < all.length; i += batch) {
    await Promise.all(
      all.slice(i, i + batch).map(async (p) => {
        const fh = await fsp.open(p, fs.constants.O_RDONLY | O_NOFOLLOW)
        try {
          await fh.sync()
        } finally {
          await fh.close()
        }
      })
    )
  }
}

/**
 * Extracts `layers` in order into the empty directory `root` and flushes it to disk. Rejects with
 * UnsafeArchive naming the entry, or UnpackError; the caller removes the partial tree.
 */
export const extractLayers = async (
  root: string,
  layers: ReadonlyArray<LayerFile>,
  opts: ExtractOptions,
  signal?: AbortSignal
): Promise<void> => {
  const x = new Extractor(root, opts)
  try {
    for (const layer of layers) {
      try {
        await x.layer(layer, signal)
      } catch (e) {
        if (e instanceof Refused) throw new UnsafeArchive({ layer: layer.label, entry: e.entry, reason: e.reason })
        if (e instanceof OpFailed && e.refusal !== undefined) throw new UnsafeArchive({ layer: layer.label, entry: e.entry, reason: e.refusal })
        if (e instanceof UnpackError) throw e
        throw new UnpackError({ message: `layer ${layer.label}: ${e instanceof Error ? e.message : String(e)}` })
      }
    }
  } finally {
    // Before anyone removes a failed tree: the worker must not create files under their feet.
    await x.close()
  }
  await syncTree(root, x.written, x.dirs())
}

export interface UnpackerService {
  readonly root: (hash: string) => string
  /** Ensures unpacked/<hash> holds every layer; `reused` when a complete tree (.ok) was already there. */
  readonly prepare: (
    hash: string,
    layers: ReadonlyArray<LayerFile>
  ) => Effect.Effect<{ readonly root: string; readonly reused: boolean }, UnsafeArchive | UnpackError>
  /** Removes every unpacked tree except `keep` (the .ok marker first); returns the hashes removed. */
  readonly removeOthers: (keep: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, UnpackError>
}

export class Unpacker extends Context.Tag("agent/Unpacker")<Unpacker, UnpackerService>() {}

const ioError = (what: string) => (e: unknown) => new UnpackError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` })
const exists = (p: string) =>
  fsp.lstat(p).then(
    () => true,
    () => false
  )
const isHash = (n: string) => /^[0-9a-f]{64}$/.test(n)

export const makeUnpacker = (dir: string, opts: ExtractOptions): UnpackerService => {
  const base = path.join(dir, "unpacked")
  const root = (hash: string) => path.join(base, hash)
  const marker = (hash: string) => path.join(base, `${hash}.ok`)

  const writeMarker = (hash: string, layers: ReadonlyArray<LayerFile>) =>
    writeFileAtomic(marker(hash), `${hash}\n${layers.map((l) => l.label).join("\n")}\n`, { mode: 0o644 })

  return {
    root,
    prepare: (hash, layers) => {
      const tree = root(hash)
      const build = Effect.tryPromise({
        try: async () => {
          await fsp.mkdir(base, { recursive: true })
          if ((await exists(marker(hash))) && (await exists(tree))) return true
          // A tree without its marker is an interrupted unpack: not trusted, redone.
          await fsp.rm(marker(hash), { force: true })
          await fsp.rm(tree, { recursive: true, force: true })
          await fsp.mkdir(tree, { mode: 0o755 })
          return false
        },
        catch: ioError(`cannot prepare ${tree}`)
      })
      const unpack = Effect.tryPromise({
        try: async (signal) => {
          await extractLayers(tree, layers, opts, signal)
          await fsyncDir(base)
          await writeMarker(hash, layers)
        },
        catch: (e) => (e instanceof UnsafeArchive || e instanceof UnpackError ? e : ioError(`cannot unpack into ${tree}`)(e))
      }).pipe(
        // Failed or interrupted: the partial tree is not trusted.
        Effect.onExit((exit) =>
          exit._tag === "Success" ? Effect.void : Effect.promise(() => fsp.rm(tree, { recursive: true, force: true }).catch(() => {}))
        )
      )
      return Effect.flatMap(build, (reused): Effect.Effect<{ root: string; reused: boolean }, UnsafeArchive | UnpackError> =>
        reused ? Effect.succeed({ root: tree, reused }) : Effect.as(unpack, { root: tree, reused })
      )
    },
    removeOthers: (keep) =>
      Effect.tryPromise({
        try: async () => {
          const names = await fsp.readdir(base).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? [] : Promise.reject(e)))
          const hashes = new Set<string>()
          for (const n of names) {
            const h = n.endsWith(".ok") ? n.slice(0, -3) : n
            if (isHash(h) && !keep.includes(h)) hashes.add(h)
          }
          for (const h of hashes) {
            await fsp.rm(marker(h), { force: true })
            await fsyncDir(base)
            await fsp.rm(root(h), { recursive: true, force: true })
          }
          return [...hashes]
        },
        catch: ioError("cannot remove old unpacked trees")
      })
  }
}

export const UnpackerLive = Layer.effect(
  Unpacker,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const log = yield* AgentLog
    return makeUnpacker(cfg.dir, { keepSuid: cfg.keepSuid, log: log.line })
  })
)
