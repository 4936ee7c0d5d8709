// Unpacks a configuration's layers into <dir>/unpacked/<confighash>/ and marks it complete with
// <confighash>.ok. Every archive is hostile: nothing outside the tree is opened, created, changed or
// followed (the invariant of Extractor.ts, which decides every file-system call; PathModel.ts
// resolves paths; TreeWriter.ts executes the calls on a worker thread; LayerReader.ts reads a layer
// with the one strict reader of src/archive/).
import { Context, Effect, Layer } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"
import { UnpackError, UnsafeArchive } from "../domain/AgentErrors.js"
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { fsyncDir, writeFileAtomic } from "../fs/Atomic.js"
import { AgentConfig } from "./AgentConfig.js"
import { AgentLog } from "./AgentLog.js"
import { type ExtractOptions, Extractor } from "./Extractor.js"
import { readLayer } from "./LayerReader.js"
import { Refused } from "./PathModel.js"
import { OpFailed, SMALL_UNPACK, TreeWriter } from "./TreeWriter.js"

export type { ExtractOptions } from "./Extractor.js"

export interface LayerFile {
  /** How the layer is named in messages, e.g. `code@v01`. */
  readonly label: string
  /** Path of the (gzip'd) tar archive. */
  readonly file: string
}

const S_ISGID = 0o2000
const { O_RDONLY, O_NOFOLLOW, O_DIRECTORY } = fs.constants
/** Entry names in messages are cut: a refused name may be 4 KiB (or, before the limits, far more). */
const shown = (name: string) => (name.length > 200 ? `${name.slice(0, 200)}…` : name)

/**
 * Flushes the tree to disk before the .ok marker is written. What is synced is what the model holds
 * now (every path's latest entry): a path that was a file and is now a link is not opened as a file.
 */
const syncTree = async (root: string, x: Extractor): Promise<void> => {
  // A few entries: fsync each. Many: one syncfs beats thousands of fsyncs (it also flushes whatever
  // else is dirty on that filesystem, which is why small trees don't use it).
  if (x.model.size > 256) {
    const viaSyncfs = await new Promise<boolean>((resolve) => execFile("sync", ["-f", root], (err) => resolve(err === null)))
    if (viaSyncfs) return
  }
  const all: Array<[string, number]> = []
  for (const [key, node] of x.model.entries()) {
    const abs = key === "" ? root : root + "/" + key
    if (node.kind === "dir") all.push([abs, O_RDONLY | O_NOFOLLOW | O_DIRECTORY])
    else if (node.kind === "file") all.push([abs, O_RDONLY | O_NOFOLLOW])
  }
  const batch = 64
  for (let i = 0; i < all.length; i += batch) {
    await Promise.all(
      all.slice(i, i + batch).map(async ([p, flags]) => {
        const fh = await fsp.open(p, flags)
        try {
          await fh.sync()
        } finally {
          await fh.close()
        }
      })
    )
  }
}

const asFailure = (label: string, e: unknown): UnsafeArchive | UnpackError => {
  if (e instanceof Refused) return new UnsafeArchive({ layer: label, entry: shown(e.entry), reason: e.reason })
  if (e instanceof LayerRefused) return new UnsafeArchive({ layer: label, entry: shown(e.entry), reason: e.reason })
  if (e instanceof LayerUnreadable) return new UnpackError({ message: e.message })
  if (e instanceof OpFailed && e.refusal !== undefined) return new UnsafeArchive({ layer: label, entry: shown(e.entry), reason: e.refusal })
  if (e instanceof UnsafeArchive || e instanceof UnpackError) return e
  return new UnpackError({ message: `layer ${label}: ${e instanceof Error ? e.message : String(e)}` })
}

/**
 * Extracts `layers` in order into the empty directory `root` and flushes it to disk. Rejects with
 * UnsafeArchive naming the entry, or UnpackError; the caller removes the partial tree. Settles only
 * once the writer thread is gone: after it, nothing of this extraction touches the disk any more.
 */
export const extractLayers = async (
  root: string,
  layers: ReadonlyArray<LayerFile>,
  opts: ExtractOptions,
  signal?: AbortSignal
): Promise<void> => {
  const rootIsSetgid = ((await fsp.stat(root)).mode & S_ISGID) !== 0
  // Small layers are written on this thread (no worker to start); a layer that cannot be read fails below, as ever.
  const sizes = await Promise.all(layers.map((l) => fsp.stat(l.file).then((st) => st.size, () => Infinity)))
  const w = new TreeWriter({ onThisThread: sizes.reduce((a, b) => a + b, 0) <= SMALL_UNPACK })
  try {
    const x = new Extractor(root, opts, w, rootIsSetgid)
    for (const layer of layers) {
      try {
        if (signal?.aborted) throw new UnpackError({ message: `layer ${layer.label}: interrupted` })
        x.beginLayer(layer.label)
        await readLayer(layer.file, layer.label, x, w, signal)
        x.endLayer()
        // Resolved once the worker has done every op of this layer.
        await w.drain()
      } catch (e) {
        throw asFailure(layer.label, e)
      }
    }
    await syncTree(root, x)
  } finally {
    // Before anyone removes a failed tree: the worker must not create files under their feet.
    await w.close()
  }
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

/**
 * Like Effect.tryPromise with an abort signal, but interruption waits until the promise has settled
 * (tryPromise returns at once): the partial tree is removed only after the extraction stopped writing.
 */
export const settled = <E>(run: (signal: AbortSignal) => Promise<void>, onError: (e: unknown) => E): Effect.Effect<void, E> =>
  Effect.async<void, E>((resume) => {
    const controller = new AbortController()
    const p = run(controller.signal)
    p.then(
      () => resume(Effect.void),
      (e) => resume(Effect.fail(onError(e)))
    )
    return Effect.promise(() => {
      controller.abort()
      return p.then(
        () => {},
        () => {}
      )
    })
  })

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
      const unpack = settled(async (signal) => {
        await extractLayers(tree, layers, opts, signal)
        await fsyncDir(base)
        await writeMarker(hash, layers)
      }, (e) => (e instanceof UnsafeArchive || e instanceof UnpackError ? e : ioError(`cannot unpack into ${tree}`)(e))).pipe(
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
