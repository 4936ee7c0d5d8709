// A replica's read-through cache of blobs kept elsewhere (PostgreSQL: PgBlobStore.ts), as files under
// <dir>/cache/<sha256>, so that SFTP serves them with positioned reads at disk speed.
//
// Content-addressed and verified: a file enters the cache only when its bytes hash to its name, and a
// file found at start (left by an earlier process, possibly cut short by a crash) is hashed again on
// first use. Written as a temp file renamed into place, so a reader never sees a partial file. Size-capped
// with least-recently-used eviction; evicting a file an SFTP handle has open is harmless (the open file
// stays readable until closed).
import { Effect, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { createReadStream } from "node:fs"
import { mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises"
import * as path from "node:path"
import { StorageError } from "../domain/Errors.js"
import { type Sha256, sha256Problem } from "../domain/Names.js"
import { removeLeftovers } from "../fs/Atomic.js"
import { io } from "./BlobStore.js"

export interface BlobCache {
  /** Path of the verified cached copy of `hash`, filled from `source` on a miss (one fill per hash at a time). */
  readonly local: (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<string, StorageError>
  /** Moves in a file already known to hash to `hash` (a just-adopted upload, same filesystem); never fails. */
  readonly seed: (file: string, hash: Sha256) => Effect.Effect<void>
  readonly remove: (hash: Sha256) => Effect.Effect<void, StorageError>
  /** Bytes held now (tests, metrics). */
  readonly size: () => number
}

const TMP = ".tmp-"

const sha256OfFile = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash("sha256")
    createReadStream(file)
      .on("data", (b) => h.update(b))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")))
  })

export const make = (dir: string, maxBytes: number) =>
  Effect.gen(function* () {
    const root = path.join(dir, "cache")
    yield* io("cannot create the blob cache", () => mkdir(root, { recursive: true }))
    yield* Effect.promise(() => removeLeftovers(root, (n) => n.startsWith(TMP)))

    // Map order is recency: a hit moves the entry to the end; eviction takes from the front.
    const entries = new Map<string, { size: number; verified: boolean }>()
    let total = 0
    for (const name of yield* io("cannot read the blob cache", () => readdir(root))) {
      if (sha256Problem(name) !== undefined) continue
      const s = yield* io("cannot read the blob cache", () => stat(path.join(root, name)))
      entries.set(name, { size: s.size, verified: false })
      total += s.size
    }

    const drop = async (hash: string) => {
      const e = entries.get(hash)
      if (e === undefined) return
      entries.delete(hash)
      total -= e.size
      await unlink(path.join(root, hash)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err
      })
    }

    /** Keeps the newest entry even when it alone is over the cap: it is about to be served. */
    const evict = async () => {
      for (const hash of entries.keys()) {
        if (total <= maxBytes || entries.size <= 1) return
        await drop(hash)
      }
    }

    const admit = async (hash: string, size: number) => {
      entries.delete(hash)
      entries.set(hash, { size, verified: true })
      total += size
      await evict()
    }

    /** Streams `source` into a temp file while hashing; renames it into place only if the hash matches. */
    const fill = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>) =>
      Effect.acquireUseRelease(
        Effect.sync(() => path.join(root, `${TMP}${randomBytes(8).toString("hex")}`)),
        (tmp) =>
          Effect.gen(function* () {
            const fh = yield* io("cannot write the blob cache", () => open(tmp, "wx", 0o600))
            const digest = createHash("sha256")
            let size = 0
            yield* Stream.runForEach(source, (chunk) =>
              io("cannot write the blob cache", async () => {
                digest.update(chunk)
                size += chunk.byteLength
                await fh.write(chunk)
              })
            ).pipe(Effect.ensuring(Effect.promise(() => fh.close())))
            if (digest.digest("hex") !== hash) return yield* new StorageError({ reason: "a stored blob does not match its hash" })
            yield* io("cannot write the blob cache", () => rename(tmp, path.join(root, hash)))
            yield* Effect.promise(() => admit(hash, size))
          }),
        (tmp) => Effect.promise(() => rm(tmp, { force: true }))
      )

    const pending = new Map<string, Promise<void>>()

    const local = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>): Effect.Effect<string, StorageError> =>
      Effect.gen(function* () {
        if (sha256Problem(hash) !== undefined) return yield* new StorageError({ reason: "invalid blob hash" })
        const file = path.join(root, hash)
        const inFlight = pending.get(hash)
        if (inFlight !== undefined) {
          yield* Effect.promise(() => inFlight.catch(() => undefined))
          return yield* local(hash, source)
        }
        const e = entries.get(hash)
        if (e !== undefined) {
          entries.delete(hash)
          entries.set(hash, e)
          if (e.verified) return file
          const ok = yield* io("cannot read the blob cache", () => sha256OfFile(file).then((h) => h === hash, () => false))
          if (ok) {
            e.verified = true
            return file
          }
          yield* io("cannot clean the blob cache", () => drop(hash))
        }
        // One fill per hash: concurrent requests for the same blob wait for it instead of fetching it again.
        const run = Effect.runPromise(Effect.either(fill(hash, source)))
        const done = run.then(() => undefined)
        pending.set(hash, done)
        const result = yield* Effect.promise(() => run).pipe(Effect.ensuring(Effect.sync(() => pending.delete(hash))))
        if (result._tag === "Left") return yield* result.left
        return file
      })

    const seed = (file: string, hash: Sha256) =>
      Effect.promise(async () => {
        if (sha256Problem(hash) !== undefined) return
        try {
          if (entries.has(hash)) return void (await unlink(file))
          const { size } = await stat(file)
          await rename(file, path.join(root, hash))
          await admit(hash, size)
        } catch {
          // A cache that could not be seeded fills on first read.
        }
      })

    const remove = (hash: Sha256) => io("cannot clean the blob cache", () => drop(hash))

    return { local, seed, remove, size: () => total } satisfies BlobCache
  })
