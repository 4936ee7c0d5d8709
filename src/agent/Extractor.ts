// Invariant: nothing outside the tree is opened, created, changed or followed.
//
// The Extractor turns a layer's entries (TarEntry, in archive order) into file-system calls that
// build GNU tar's tree (`tar -xf` of each layer in turn, as root: owners, modes, mtimes, and its
// directory metadata timing), or refuses the layer with the entry and the reason. How:
// - Every path it hands the kernel is a key of the PathModel under the root: each component but
//   the last is a directory we made, so the kernel follows no link on the way. The last component
//   is created with O_EXCL|O_NOFOLLOW (files), mkdir, symlink or link (none follows it), after
//   unlink/rmdir of what was there.
// - Metadata is changed only through a descriptor opened with O_NOFOLLOW (|O_DIRECTORY for
//   directories), or lchown/lutimes on a symlink's key: never through a path that can follow a link.
// - Directory metadata is deferred as GNU tar defers it (extract.c, delay_set_stat): a stack of
//   directory records, each applied before the first entry whose name is not inside it; records of
//   directories holding a delayed link wait for the end of the layer. A record is applied only to
//   the very directory it was made for: the one its name still resolves to; a record's directory
//   cannot be replaced while it waits (that is refused).
// - What is remembered about a path is the path's latest entry (the model is updated as entries
//   replace each other), so nothing later acts on a path as what it used to be.
// The calls run in order on a worker thread (TreeWriter.ts), overlapping with the parsing.
import { quoteName, type SplitPath, splitPath } from "../archive/PathRules.js"
import type { TarEntry, TarSink } from "../archive/TarParser.js"
import type { Level } from "./AgentLog.js"
import { type Creation, type DirNode, FILE, isDelayedTarget, keyOf, type Node, PathModel, Refused } from "./PathModel.js"
import type { FileMeta, Refusals, TreeWriter } from "./TreeWriter.js"

export interface ExtractOptions {
  readonly keepSuid: boolean
  readonly log: (level: Level, message: string) => void
}

/** A directory whose metadata waits (GNU tar's struct delayed_set_stat). */
interface DirRecord {
  /** The entry's name as GNU tar compares it (no leading or trailing "/"). */
  readonly name: string
  readonly parts: ReadonlyArray<string>
  readonly key: string
  readonly node: DirNode
  /** Undefined for an intermediate directory (made for a deeper entry): nothing to set. */
  meta: { readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: number } | undefined
  /** Made by this record's entry (or for a deeper one), not already there: see applyRecord. */
  readonly created: boolean
  afterLinks: boolean
}

const S_ISGID = 0o2000
const NOT_EMPTY: Refusals = { ENOTEMPTY: "cannot replace a non-empty directory", EEXIST: "cannot replace a non-empty directory" }

/** The name GNU tar works with: leading and trailing "/" removed ("." for the root). */
const gnuName = (raw: string): string => {
  let s = 0
  while (raw[s] === "/") s++
  let e = raw.length
  while (e > s + 1 && raw[e - 1] === "/") e--
  const n = raw.slice(s, e)
  return n === "" || n === "/" ? "." : n
}

/** GNU tar's test in apply_nonancestor_delayed_set_stat: is directory `d` an ancestor of `f` by name? */
const isAncestor = (d: string, f: string): boolean =>
  d.length < f.length && (f[d.length] === "/" || d[d.length - 1] === "/") && f.startsWith(d)

/** GNU tar's find_direct_ancestor test: `d` is the parent of `f` by name. */
const isParent = (d: string, f: string): boolean => f.startsWith(d) && f[d.length] === "/" && f.lastIndexOf("/") === d.length

const isDotOrSlash = (name: string): boolean => name.split("/").every((c) => c === "" || c === ".")

export class Extractor implements TarSink {
  readonly model = new PathModel()
  private readonly umask = process.umask()
  private readonly isRoot = process.getuid?.() === 0
  /** Owner a new file gets from open(2); an entry with exactly that owner needs no fchown. */
  private readonly euid = process.geteuid?.() ?? -1
  private readonly egid = process.getegid?.() ?? -1
  /** A setgid directory in the tree hands its group to new files: then every owner is set explicitly. */
  private setgidDirs: boolean
  private now = Date.now() / 1000
  private readonly stack: Array<DirRecord> = []
  /** The records on the stack by name: a directory entry updates its name's waiting record (GNU tar's table). */
  private readonly records = new Map<string, DirRecord>()
  /** Parent keys of this layer's delayed links (GNU tar replaces their placeholders at the end). */
  private delayedParents: Array<string> = []
  private label = ""
  private entryName = ""
  private warnedAbsolute = false
  /** The file entry being written: its slot and what its close sets. */
  private file: { readonly slot: number; readonly e: TarEntry; readonly mode: number } | undefined

  constructor(
    private readonly root: string,
    private readonly opts: ExtractOptions,
    private readonly w: TreeWriter,
    rootIsSetgid: boolean
  ) {
    this.setgidDirs = rootIsSetgid
  }

  private abs(key: string): string {
    return key === "" ? this.root : this.root + "/" + key
  }

  private refuse(reason: string): never {
    throw new Refused(this.entryName, reason)
  }

  private owner(uid: number, gid: number): { uid: number; gid: number } | object {
    return this.isRoot ? { uid, gid } : {}
  }

  beginLayer(label: string): void {
    this.label = label
    this.model.layer++
    this.now = Date.now() / 1000
    this.warnedAbsolute = false
  }

  private split(raw: string, what: string): SplitPath {
    const s = splitPath(raw, what)
    if (typeof s === "string") this.refuse(s)
    if (s.absolute && !this.warnedAbsolute) {
      this.warnedAbsolute = true
      this.opts.log("warn", `layer ${this.label}: removing leading "/" from member names`)
    }
    return s
  }

  private mode(raw: number): number {
    let mode = raw & 0o7777
    if (!this.opts.keepSuid && mode & 0o6000) {
      this.opts.log("warn", `layer ${this.label}: dropped setuid/setgid bits of ${quoteName(this.entryName)}`)
      mode &= ~0o6000
    }
    return mode
  }

  /** TarSink: a new entry (the previous one has ended). */
  entry(e: TarEntry): void {
    this.entryName = e.path
    const { parts } = this.split(e.path, "path")
    const name = gnuName(e.path)
    this.applyNonAncestors(name)
    switch (e.kind) {
      case "dir":
        return this.directory(e, name, parts)
      case "file":
        return this.regular(e, name, parts)
      case "symlink":
        return this.symlink(e, name, parts)
      case "hardlink":
        return this.hardlink(e, name, parts)
      default:
        // Device nodes and FIFOs have no place in a deployed tree (and need privileges).
        this.opts.log("warn", `layer ${this.label}: skipped ${e.kind} entry ${quoteName(e.path)}`)
    }
  }

  /** TarSink: content of the current file entry. */
  data(chunk: Buffer): void {
    if (this.file !== undefined) this.w.write(this.entryName, this.file.slot, chunk)
  }

  /** TarSink: the current entry is complete. */
  entryEnd(): void {
    const f = this.file
    if (f === undefined) return
    this.file = undefined
    this.w.push(this.entryName, { k: "close", slot: f.slot, ...this.fileMeta(f.e, f.mode) })
  }

  private fileMeta(e: TarEntry, mode: number): FileMeta {
    const chown = this.isRoot && (e.uid !== this.euid || e.gid !== this.egid || this.setgidDirs)
    return {
      ...(chown ? { uid: e.uid, gid: e.gid } : {}),
      // chmod only when the umask changed the mode (or chown dropped set-id bits).
      ...((mode & ~this.umask) !== mode || (this.isRoot && mode & 0o6000) ? { chmod: mode } : {}),
      atime: e.atime ?? this.now,
      mtime: e.mtime
    }
  }

  /** Key of a non-root entry's path; missing parent directories are made (and recorded, as GNU tar does). */
  private place(name: string, parts: ReadonlyArray<string>): string {
    if (parts.length === 0) this.refuse("empty path")
    const parent = this.model.parentOf(this.entryName, name, parts, this.mkdirIntermediate)!
    return keyOf(parent, parts[parts.length - 1]!)
  }

  private readonly mkdirIntermediate = (c: Creation): void => {
    // GNU tar: mode 0777 & ~umask, an intermediate record (nothing set when it is applied).
    this.w.push(this.entryName, { k: "mkdir", path: this.abs(c.key), mode: 0o777 })
    c.node.pending++
    const parts = c.name.split("/").filter((x) => x !== "" && x !== ".")
    this.pushRecord({ name: c.name, parts, key: c.key, node: c.node, meta: undefined, created: true, afterLinks: false })
  }

  private pushRecord(r: DirRecord): void {
    this.stack.push(r)
    this.records.set(r.name, r)
  }

  /** Removes what is at `key` for a new entry, as GNU tar does (unlink, or rmdir of an empty dir). */
  private clear(key: string, node: Node): void {
    if (node.kind === "dir") {
      if (key === "") this.refuse("cannot replace the root directory")
      if (node.pending > 0) this.refuse(`replaces the directory ${quoteName(key)} before its metadata is set`)
      this.w.push(this.entryName, { k: "rmdir", path: this.abs(key) }, NOT_EMPTY)
    } else {
      if (node.kind === "symlink" && node.delayed && node.layer === this.model.layer)
        this.refuse(`replaces the symbolic link ${quoteName(key)} in the layer that made it (GNU tar creates it only after the layer)`)
      this.w.push(this.entryName, { k: "unlink", path: this.abs(key) })
    }
    this.model.remove(key)
  }

  private directory(e: TarEntry, name: string, parts: ReadonlyArray<string>): void {
    const key = parts.length === 0 ? "" : this.place(name, parts)
    let node = this.model.get(key)
    if (node !== undefined && node.kind !== "dir") {
      this.clear(key, node)
      node = undefined
    }
    const created = node === undefined
    if (node === undefined) {
      this.w.push(this.entryName, { k: "mkdir", path: this.abs(key), mode: 0o700 })
      node = { kind: "dir", pending: 0 }
      this.model.set(key, node)
    }
    const mode = this.mode(e.mode)
    if (mode & S_ISGID) this.setgidDirs = true
    const meta = { mode, uid: e.uid, gid: e.gid, mtime: e.mtime }
    const waiting = this.records.get(name)
    if (waiting !== undefined) {
      // GNU tar updates the record in place (keeping its place and whether it waits for the links).
      if (waiting.node !== node) this.refuse("names a directory other than the one its name named earlier in the layer")
      waiting.meta = meta
    } else {
      node.pending++
      this.pushRecord({ name, parts, key, node, meta, created, afterLinks: false })
    }
    if (isDotOrSlash(name)) this.markAfterLinks(this.stack.indexOf(waiting ?? this.stack.at(-1)!))
  }

  private regular(e: TarEntry, name: string, parts: ReadonlyArray<string>): void {
    const key = this.place(name, parts)
    const old = this.model.get(key)
    if (old !== undefined) this.clear(key, old)
    const mode = this.mode(e.mode)
    this.model.set(key, FILE)
    if (e.size === 0) return this.w.push(this.entryName, { k: "empty", path: this.abs(key), mode: mode & 0o777, ...this.fileMeta(e, mode) })
    const slot = this.w.slot()
    this.w.push(this.entryName, { k: "open", slot, path: this.abs(key), mode: mode & 0o777 })
    this.file = { slot, e, mode }
  }

  private symlink(e: TarEntry, name: string, parts: ReadonlyArray<string>): void {
    const target = e.linkpath
    if (target === "") this.refuse("empty symbolic link target")
    const key = this.place(name, parts)
    const old = this.model.get(key)
    if (old !== undefined) this.clear(key, old)
    // The target is stored verbatim: links may point anywhere; we only never follow them out.
    this.w.push(this.entryName, { k: "symlink", target, path: this.abs(key), ...this.owner(e.uid, e.gid), atime: e.atime ?? this.now, mtime: e.mtime })
    const delayed = isDelayedTarget(target)
    this.model.set(key, { kind: "symlink", target, layer: this.model.layer, delayed })
    if (delayed) {
      const slash = key.lastIndexOf("/")
      this.delayedParents.push(slash < 0 ? "" : key.slice(0, slash))
      // GNU tar's create_placeholder_file: the directory record that is the link's parent waits for the links.
      for (let i = this.stack.length - 1; i >= 0; i--) {
        const r = this.stack[i]!
        if (!r.afterLinks && isParent(r.name, name)) {
          this.markAfterLinks(i)
          break
        }
      }
    }
  }

  private hardlink(e: TarEntry, name: string, parts: ReadonlyArray<string>): void {
    const t = this.split(e.linkpath, "hard link target")
    if (t.parts.length === 0) this.refuse("hard link to the root directory")
    const tname = gnuName(e.linkpath)
    const tdir = this.model.parentOf(this.entryName, tname, t.parts, undefined)
    const tkey = tdir === undefined ? undefined : keyOf(tdir, t.parts[t.parts.length - 1]!)
    if (tkey === undefined || this.model.get(tkey)?.kind !== "file")
      this.refuse(`hard link target ${quoteName(e.linkpath)} is not a regular file inside the tree`)
    const key = this.place(name, parts)
    if (key === tkey) return // GNU tar: the same file already
    const old = this.model.get(key)
    if (old !== undefined) this.clear(key, old)
    this.w.push(this.entryName, { k: "link", existing: this.abs(tkey), path: this.abs(key) })
    this.model.set(key, FILE)
  }

  /** GNU tar's mark_after_links: the record at `i` and those below it, up to one already marked. */
  private markAfterLinks(i: number): void {
    for (let j = i; j >= 0 && !(j < i && this.stack[j]!.afterLinks); j--) this.stack[j]!.afterLinks = true
  }

  /** GNU tar's apply_nonancestor_delayed_set_stat(name, 0): applies records `name` is not inside. */
  private applyNonAncestors(name: string): void {
    for (let r = this.stack.at(-1); r !== undefined && !r.afterLinks && !isAncestor(r.name, name); r = this.stack.at(-1)) {
      this.stack.pop()
      this.applyRecord(r)
    }
  }

  /**
   * Sets what `r` records. `afterLinks`: applied after the layer's delayed links, where GNU tar compares
   * each directory's actual mode, so that even an intermediate record resets the rwx bits to those it made
   * the directory with (0777 & ~umask), undoing a mode another record of the same directory under another
   * name (`./c` and `c`) set meanwhile.
   */
  private applyRecord(r: DirRecord, afterLinks = false): void {
    this.records.delete(r.name)
    r.node.pending--
    const m = r.meta
    if (m === undefined && !afterLinks) return
    // Still the directory the record was made for, under the same name (GNU tar would set it by name).
    const now = r.parts.length === 0 ? this.model.get("") : this.lookup(r.name, r.parts)
    if (now !== r.node) throw new Refused(r.name, "the directory was replaced before its metadata could be set")
    if (m === undefined) return this.w.push(r.name, { k: "dirrwx", path: this.abs(r.key), rwx: 0o777 & ~this.umask })
    // GNU tar makes a directory with its owner bits only and later skips the chmod when the mode's rwx bits
    // already match: so a directory with no group or other bits keeps the setgid bit it inherited at mkdir.
    const keepInheritedSetgid = r.created && (m.mode & 0o077) === 0
    this.w.push(r.name, { k: "dirmeta", path: this.abs(r.key), mode: m.mode, keepInheritedSetgid, ...this.owner(m.uid, m.gid), atime: this.now, mtime: m.mtime })
  }

  private lookup(name: string, parts: ReadonlyArray<string>): Node | undefined {
    const dir = this.model.parentOf(name, name, parts, undefined)
    return dir === undefined ? undefined : this.model.get(keyOf(dir, parts[parts.length - 1]!))
  }

  /** GNU tar's extract_finish: ordinary records, then the delayed links (touching their parents), then the rest. */
  endLayer(): void {
    this.entryName = ""
    this.applyNonAncestors("")
    for (const key of this.delayedParents) this.w.push("", { k: "touch", path: this.abs(key) })
    this.delayedParents = []
    for (let r = this.stack.pop(); r !== undefined; r = this.stack.pop()) this.applyRecord(r, true)
  }
}
