// Verified blobs under <dir>/cache/<sha256>. A download streams into a temp file while hashing;
// only a file whose sha256 matches is fsync'd and renamed into place (then the directory is fsync'd).
// `<dir>/cache/previous` lists the blobs of the configuration deployed before the current one, so the
// cleanup after a switch keeps them and a rollback needs no download.
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { CacheError, HashMismatch } from "../domain/AgentErrors.js"
import { fsyncDir, removeLeftovers, unwritten, writeFileAtomic } from "../fs/Atomic.js"
import { AgentConfig } from "./AgentConfig.js"
import { hashFile } from "../fs/FileHasher.js"
import type { Sink } from "./RegistryClient.js"

export interface CacheService {
  readonly path: (hash: string) => string
  readonly has: (hash: string) => Effect.Effect<boolean, CacheError>
  /**
   * Stores blob `hash` from what `fill` passes to the sink it is given (in order; the pieces may be reused
   * once the sink's Effect ends). Fails, keeping nothing, when the content hashes differently.
   */
  readonly store: <E, R>(
    hash: string,
    fill: (sink: Sink<CacheError>) => Effect.Effect<void, E, R>
  ) => Effect.Effect<void, E | HashMismatch | CacheError, R>
  /** Removes every cached blob not in `keep`; returns the hashes removed. */
  readonly retainOnly: (keep: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, CacheError>
  /** The blobs of the previously deployed configuration, as recorded by `setPrevious` (none if never). */
  readonly previous: Effect.Effect<ReadonlyArray<string>, CacheError>
  /** Records (atomically) the blobs of the configuration being replaced. */
  readonly setPrevious: (hashes: ReadonlyArray<string>) => Effect.Effect<void, CacheError>
}

export class Cache extends Context.Tag("agent/Cache")<Cache, CacheService>() {}

const io = (what: string) => (err: unknown) => new CacheError({ message: `${what}: ${err instanceof Error ? err.message : String(err)}` })

const isBlobName = (n: string) => /^[0-9a-f]{64}$/.test(n)
/**
 * Bytes written between two messages to the hashing worker (which reads them back): a batch is often a
 * single 255 KiB read, and a message per batch cost ~120 ms of the main thread per 256 MiB downloaded.
 */
const HASH_STEP = 4 * 1024 * 1024
/** Bytes written between two background fdatasyncs of a download. */
const EARLY_SYNC_BYTES = 32 * 1024 * 1024
const PREVIOUS = "previous"

export const makeCache = (dir: string): CacheService => {
  const cacheDir = path.join(dir, "cache")
  const blobPath = (hash: string) => path.join(cacheDir, hash)
  return {
    path: blobPath,
    has: (hash) =>
      Effect.tryPromise({
        try: () => fs.stat(blobPath(hash)).then((s) => s.isFile(), (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(e))),
        catch: io(`cannot check cached blob ${hash}`)
      }),
    store: (hash, fill) =>
      Effect.acquireUseRelease(
        Effect.tryPromise({
          try: async () => {
            await fs.mkdir(cacheDir, { recursive: true })
            const tmp = path.join(cacheDir, `.${hash}.${randomBytes(6).toString("hex")}.part`)
            const fh = await fs.open(tmp, "wx", 0o644)
            return { tmp, fh, closed: false, done: false, hash: hashFile(tmp) }
          },
          catch: io("cannot create a file in the cache")
        }),
        (t) =>
          Effect.gen(function* () {
            // Write-back starts while the download goes on, so the fsync at the end flushes only the tail
            // (a 256 MiB blob's single fsync took 0.25 s here, a quarter of its download).
            let unsynced = 0
            let syncing: Promise<void> | undefined
            let total = 0
            let told = 0 // bytes the hasher was told about
            // Once per batch of reads, not once per 256 KiB: one writev, then the hashing worker reads it back.
            yield* fill((pieces) =>
              Effect.tryPromise({
                try: async () => {
                  const written = (await t.fh.writev(pieces as Array<Buffer>)).bytesWritten
                  // writev may be partial; finish piece by piece from where it stopped.
                  for (const piece of unwritten(pieces, written)) {
                    let off = 0
                    while (off < piece.byteLength) off += (await t.fh.write(piece, off, piece.byteLength - off)).bytesWritten
                  }
                  for (const piece of pieces) {
                    unsynced += piece.byteLength
                    total += piece.byteLength
                  }
                  if (total - told >= HASH_STEP) t.hash.written((told = total))
                  if (unsynced >= EARLY_SYNC_BYTES && syncing === undefined) {
                    unsynced = 0
                    // Its failure is the final sync's to report; the blob is not committed without that one.
                    syncing = t.fh.datasync().then(
                      () => (syncing = undefined),
                      () => (syncing = undefined)
                    )
                  }
                },
                catch: io(`cannot write blob ${hash} to the cache`)
              })
            )
            yield* Effect.promise(() => syncing ?? Promise.resolve())
            const actual = yield* Effect.tryPromise({ try: () => t.hash.digest(total), catch: io(`cannot hash blob ${hash}`) })
            if (actual !== hash) return yield* new HashMismatch({ expected: hash, actual })
            yield* Effect.tryPromise({
              try: async () => {
                await t.fh.sync()
                t.closed = true
                await t.fh.close()
                await fs.rename(t.tmp, blobPath(hash))
                t.done = true
                await fsyncDir(cacheDir)
              },
              catch: io(`cannot commit blob ${hash} to the cache`)
            })
          }),
        (t) =>
          Effect.promise(async () => {
            t.hash.abandon()
            if (!t.closed) await t.fh.close().catch(() => {})
            if (!t.done) await fs.rm(t.tmp, { force: true }).catch(() => {})
          })
      ),
    retainOnly: (keep) =>
      Effect.tryPromise({
        try: async () => {
          const names = await fs.readdir(cacheDir).catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? [] : Promise.reject(e)))
          const removed: Array<string> = []
          for (const n of names) {
            if (isBlobName(n) && !keep.includes(n)) {
              await fs.rm(path.join(cacheDir, n), { force: true })
              removed.push(n)
            }
          }
          return removed
        },
        catch: io("cannot clean the cache")
      }),
    previous: Effect.tryPromise({
      try: () =>
        fs.readFile(path.join(cacheDir, PREVIOUS), "utf8").then(
          (text) => text.split("\n").filter(isBlobName),
          (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? [] : Promise.reject(e))
        ),
      catch: io("cannot read the list of the previous configuration's blobs")
    }),
    setPrevious: (hashes) =>
      Effect.tryPromise({
        try: async () => {
          await fs.mkdir(cacheDir, { recursive: true })
          // A `.part` temp name, so that a crash's leftover goes with removeStaleParts.
          const text = hashes.filter(isBlobName).map((h) => `${h}\n`).join("")
          await writeFileAtomic(path.join(cacheDir, PREVIOUS), text, { mode: 0o644, tmpSuffix: ".part" })
        },
        catch: io("cannot record the previous configuration's blobs")
      }).pipe(Effect.uninterruptible)
  }
}

/** Leftover `.part` files of an interrupted download (e.g. after a crash) are removed at start. */
export const removeStaleParts = (dir: string): Promise<void> => removeLeftovers(path.join(dir, "cache"), (n) => n.endsWith(".part"))

export const CacheLive = Layer.effect(
  Cache,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    yield* Effect.promise(() => removeStaleParts(cfg.dir))
    return makeCache(cfg.dir)
  })
)
