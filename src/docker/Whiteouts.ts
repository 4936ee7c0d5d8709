// Which entries of each image layer survive into its re-packed component, decided from the layer
// indexes alone (pure; no file is read). Unpacking the surviving entries of every layer in order
// with plain `tar -x` must give the image's final filesystem, so:
//   - `.wh.NAME` in a later layer removes NAME (and all below it) from every earlier layer;
//   - `.wh..wh..opq` in a later layer removes everything below its directory from earlier layers;
//   - a later non-directory at P removes an earlier directory at P and everything below P, and a
//     later directory at P removes an earlier non-directory at P (tar cannot overwrite across kinds);
//   - whiteout markers (`.wh.*`) and the root entry are never shipped;
//   - a hard link whose target is not an earlier, surviving entry of the same layer becomes a copy
//     of the target's data (the target may live in an earlier layer or have been removed).
// Because an earlier layer's content then depends on later layers, the version says so: the layer's
// diff-id alone when nothing was changed, plus a digest of the changes otherwise (see versionOf).
import { createHash } from "node:crypto"
import type { TarEntry } from "./TarFile.js"

export interface LayerIndex {
  /** sha256 (hex) of the uncompressed layer tar: docker's diff-id. */
  readonly diffId: string
  readonly entries: ReadonlyArray<TarEntry>
}

/** Where a converted hard link takes its bytes from: a File entry of some layer. */
export interface DataSource {
  readonly layer: number
  readonly entry: number
}

export interface LayerPlan {
  /** 1 where the entry is left out of the re-packed layer. */
  readonly drop: Uint8Array
  /** Hard links written as regular files, by entry index. */
  readonly copies: ReadonlyMap<number, DataSource>
  /** Paths left out because later layers delete or replace them (in entry order). */
  readonly removed: ReadonlyArray<string>
  /** Human-readable notes (a hard link whose target exists nowhere, say). */
  readonly warnings: ReadonlyArray<string>
  readonly version: string
}

const WH = ".wh."
const OPAQUE = ".wh..wh..opq"

const baseName = (p: string) => p.slice(p.lastIndexOf("/") + 1)
const dirName = (p: string) => (p.includes("/") ? p.slice(0, p.lastIndexOf("/")) : "")

/** Strict ancestors of `p`, nearest last: `a/b/c` → `a`, `a/b`. */
const ancestors = function* (p: string) {
  let i = p.indexOf("/")
  while (i >= 0) {
    yield p.slice(0, i)
    i = p.indexOf("/", i + 1)
  }
}

const isWhiteout = (e: TarEntry) => baseName(e.path).startsWith(WH)

/** Path → entry indexes (ascending) of one layer. */
const pathIndex = (entries: ReadonlyArray<TarEntry>): Map<string, Array<number>> => {
  const m = new Map<string, Array<number>>()
  entries.forEach((e, i) => {
    const list = m.get(e.path)
    if (list) list.push(i)
    else m.set(e.path, [i])
  })
  return m
}

/** What layers after the current one do to it, accumulated from the last layer backwards. */
class LaterLayers {
  readonly gone = new Set<string>() // whiteout targets: the path and everything below
  readonly emptied = new Set<string>() // opaque directories: everything below
  readonly nonDirs = new Set<string>()
  readonly dirs = new Set<string>()

  removes(e: TarEntry): boolean {
    if (this.gone.has(e.path) || this.emptied.has("")) return true // "" : an opaque marker at the root
    for (const a of ancestors(e.path)) if (this.gone.has(a) || this.emptied.has(a) || this.nonDirs.has(a)) return true
    return e.kind === "Directory" ? this.nonDirs.has(e.path) : this.dirs.has(e.path)
  }

  add(entries: ReadonlyArray<TarEntry>) {
    for (const e of entries) {
      const name = baseName(e.path)
      if (name === OPAQUE) this.emptied.add(dirName(e.path))
      else if (name.startsWith(WH + WH)) continue // other aufs metadata (.wh..wh.plnk …): no meaning here
      else if (name.startsWith(WH)) {
        const target = name.slice(WH.length)
        this.gone.add(dirName(e.path) === "" ? target : `${dirName(e.path)}/${target}`)
      } else if (e.kind === "Directory") this.dirs.add(e.path)
      else this.nonDirs.add(e.path)
    }
  }
}

/** `<first 12 hex of diff-id>`, or with `-<8 hex of the change list>` when the layer was changed. */
export const versionOf = (diffId: string, changes: ReadonlyArray<string>): string =>
  changes.length === 0
    ? diffId.slice(0, 12)
    : `${diffId.slice(0, 12)}-${createHash("sha256").update(changes.join("\n")).digest("hex").slice(0, 8)}`

export const planLayers = (layers: ReadonlyArray<LayerIndex>): Array<LayerPlan> => {
  const indexes = layers.map((l) => pathIndex(l.entries))
  const later = new LaterLayers()
  const plans: Array<LayerPlan> = new Array(layers.length)

  // The File entry a hard link at (layer, before) to `target` reads: the last earlier entry of that
  // path in the same layer, else the last one in earlier layers; links are followed.
  const resolve = (layer: number, target: string, before: number, depth = 0): DataSource | undefined => {
    if (depth > 64) return undefined
    for (let l = layer; l >= 0; l--) {
      const candidates = indexes[l]!.get(target) ?? []
      const limit = l === layer ? before : Infinity
      for (let k = candidates.length - 1; k >= 0; k--) {
        const i = candidates[k]!
        if (i >= limit) continue
        const e = layers[l]!.entries[i]!
        if (e.kind === "File") return { layer: l, entry: i }
        if (e.kind === "Link") return resolve(l, e.linkpath, i, depth + 1)
        return undefined
      }
    }
    return undefined
  }

  for (let l = layers.length - 1; l >= 0; l--) {
    const { entries, diffId } = layers[l]!
    const drop = new Uint8Array(entries.length)
    const removed: Array<string> = []
    const changes: Array<string> = []
    const warnings: Array<string> = []
    const copies = new Map<number, DataSource>()
    entries.forEach((e, i) => {
      if (e.path === "" || isWhiteout(e)) drop[i] = 1
      else if (later.removes(e)) {
        drop[i] = 1
        removed.push(e.path)
        changes.push(`-${e.path}`)
      }
    })
    entries.forEach((e, i) => {
      if (e.kind !== "Link" || drop[i] === 1) return
      // Kept as a link only when its target is an earlier entry of this layer that is shipped too.
      const same = (indexes[l]!.get(e.linkpath) ?? []).filter((k) => k < i)
      const last = same[same.length - 1]
      if (last !== undefined && drop[last] === 0) return
      const source = resolve(l, e.linkpath, i)
      if (source === undefined) {
        drop[i] = 1
        warnings.push(`layer ${l + 1}: hard link ${e.path} points to ${e.linkpath}, which does not exist; left out`)
        changes.push(`!${e.path}`)
        return
      }
      copies.set(i, source)
      const from = layers[source.layer]!
      changes.push(`=${e.path} ${from.diffId} ${from.entries[source.entry]!.path}`)
    })
    plans[l] = { drop, copies, removed, warnings, version: versionOf(diffId, changes) }
    later.add(entries)
  }
  return plans
}
