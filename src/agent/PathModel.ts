// The Extractor's model of the tree it writes: every path it created, resolved the way the kernel
// resolves it while GNU tar extracts, without ever asking the kernel to follow a link. A path is a
// key (its components joined by "/", "" for the root) whose every component but the last is a
// directory of the model; such a key, under the tree's root, names what the model says it does.
// Symbolic links are followed only where GNU tar's extraction follows them and stays in the tree:
// relative targets, created in an earlier layer (GNU tar creates links with an absolute or `..`
// target only at the end of the archive: an entry passing through one fails there), never above the
// root. Anything else is a refusal naming the entry, never a guess.

import { quoteName } from "../archive/PathRules.js"

/** Raised from the Extractor's entry handlers (inside TarParser.write); becomes UnsafeArchive (layer, entry, reason). */
export class Refused extends Error {
  constructor(
    readonly entry: string,
    readonly reason: string
  ) {
    super(reason)
  }
}

export interface DirNode {
  readonly kind: "dir"
  /** Directory records (see Extractor) waiting to set this directory's metadata. */
  pending: number
}
export interface FileNode {
  readonly kind: "file"
}
export interface LinkNode {
  readonly kind: "symlink"
  readonly target: string
  /** Layer that created it. */
  readonly layer: number
  /** GNU tar makes it at the end of its layer (absolute or `..` target): a placeholder until then. */
  readonly delayed: boolean
}
export type Node = DirNode | FileNode | LinkNode

export const FILE: FileNode = { kind: "file" }
const MAX_LINK_HOPS = 40

/** Whether GNU tar delays a symbolic link to the end of its archive (extract.c, extract_symlink). */
export const isDelayedTarget = (target: string): boolean => target.startsWith("/") || target.split("/").includes("..")

export const keyOf = (dir: string, name: string): string => (dir === "" ? name : dir + "/" + name)

export interface Creation {
  /** Key of the directory to create. */
  readonly key: string
  /** The entry name's prefix that names it (GNU tar's intermediate directory record). */
  readonly name: string
  /** Its node, already in the model. */
  readonly node: DirNode
}

export class PathModel {
  private readonly nodes = new Map<string, Node>([["", { kind: "dir", pending: 0 }]])
  /** Entry-name parent (as in the archive) -> key of the directory it resolves to; emptied when a dir or link goes. */
  private readonly resolved = new Map<string, string>()
  /** Layer being extracted (counts from 1). */
  layer = 0

  get(key: string): Node | undefined {
    return this.nodes.get(key)
  }

  set(key: string, node: Node): void {
    this.nodes.set(key, node)
  }

  get size(): number {
    return this.nodes.size
  }

  /** Forgets `key` (the caller removed it from the disk). */
  remove(key: string): void {
    const node = this.nodes.get(key)
    if (node === undefined) return
    this.nodes.delete(key)
    if (node.kind !== "file") this.resolved.clear()
  }

  entries(): IterableIterator<[string, Node]> {
    return this.nodes.entries()
  }

  /**
   * The directory key that the directory part of `name` (components `parts` of the raw name `name`,
   * all but the last) resolves to. Missing directories named by the entry itself are created through
   * `mkdir` when `mkdir` is given (as GNU tar's make_directories does), otherwise undefined is returned;
   * a missing one reached through a link is refused (GNU tar fails there).
   */
  parentOf(
    entry: string,
    name: string,
    parts: ReadonlyArray<string>,
    mkdir: ((c: Creation) => void) | undefined
  ): string | undefined {
    const rawParent = parentName(name)
    const hit = this.resolved.get(rawParent)
    if (hit !== undefined) return hit
    const refuse = (reason: string): never => {
      throw new Refused(entry, reason)
    }
    // Components to walk: the entry's own (with the name prefix that ends at each), then link targets.
    const stack: Array<string> = []
    let key = ""
    const queue: Array<{ c: string; fromLink: boolean; name: string }> = []
    let at = 0
    for (let i = 0; i < parts.length - 1; i++) {
      const c = parts[i]!
      at = name.indexOf(c, at) + c.length
      queue.push({ c, fromLink: false, name: name.slice(0, at) })
    }
    let hops = 0
    for (let q = 0; q < queue.length; q++) {
      const { c, fromLink } = queue[q]!
      if (c === "" || c === ".") continue
      if (c === "..") {
        if (stack.length === 0) refuse("passes through a symbolic link that leads out of the tree")
        stack.pop()
        key = stack.join("/")
        continue
      }
      const next = keyOf(key, c)
      const node = this.nodes.get(next)
      if (node === undefined) {
        if (fromLink) refuse(`passes through a symbolic link to the missing ${quoteName(next)}`)
        if (mkdir === undefined) return undefined
        const created: DirNode = { kind: "dir", pending: 0 }
        this.nodes.set(next, created)
        mkdir({ key: next, name: queue[q]!.name, node: created })
      } else if (node.kind === "symlink") {
        if (++hops > MAX_LINK_HOPS) refuse("too many levels of symbolic links")
        if (node.delayed && node.layer === this.layer)
          refuse(`passes through the symbolic link ${quoteName(next)}, which GNU tar creates only after the layer`)
        if (node.target.startsWith("/")) refuse(`passes through the symbolic link ${quoteName(next)}, which leads out of the tree`)
        const rest = node.target.split("/").map((t) => ({ c: t, fromLink: true, name: "" }))
        queue.splice(q + 1, 0, ...rest)
        continue
      } else if (node.kind !== "dir") {
        refuse(`${quoteName(next)} is not a directory`)
      }
      stack.push(c)
      key = next
    }
    if (mkdir !== undefined) this.resolved.set(rawParent, key)
    return key
  }
}

/** The raw name without its last component ("" for a top-level name). */
const parentName = (name: string): string => {
  let end = name.length
  while (end > 0 && name[end - 1] === "/") end--
  const slash = name.lastIndexOf("/", end - 1)
  return slash < 0 ? "" : name.slice(0, slash)
}
