// A replica's read-through cache of blobs kept elsewhere (PostgreSQL: PgBlobStore.ts), as files under
// <dir>/cache/<sha256>, so that SFTP serves them with positioned reads at disk speed.
//
// Content-addressed and verified: a file enters the cache only when its bytes hash to its name, and a
// file found at start (left by an earlier process, possibly cut short by a crash) is hashed again on
// first use. Written as a temp file renamed into place. A fill is served while it arrives (`serve`: SFTP
// reads wait for their bytes, the end of the blob only for its verified hash), so the first download on
// a replica runs at the speed of the source instead of waiting for the whole blob. Size-capped with
// least-recently-used eviction; evicting a file an SFTP handle has open is harmless (the open file stays
// readable until closed).
import { Cause, Effect, Exit, Option, Runtime, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { createReadStream } from "node:fs"
import { mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises"
import * as path from "node:path"
import { StorageError } from "../domain/Errors.js"
import { type Sha256, sha256Problem } from "../domain/Names.js"
import { removeLeftovers } from "../fs/Atomic.js"
import { type Filling, io, type Served } from "./BlobStore.js"

export interface BlobCache {
  /** Path of the verified cached copy of `hash`, filled from `source` on a miss (one fill per hash at a time). */
  readonly local: (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<string, StorageError>
  /** As `local`, but returns at once with the fill in progress (started from `source` on a miss, or joined). */
  readonly serve: (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<Served, StorageError>
  /** Moves in a file already known to hash to `hash` (a just-adopted upload, same filesystem); never fails. */
  readonly seed: (file: string, hash: Sha256) => Effect.Effect<void>
  readonly remove: (hash: Sha256) => Effect.Effect<void, StorageError>
  /** Bytes held now (tests, metrics). */
  readonly size: () => number
}

const TMP = ".tmp-"

/** A fill in progress: how far its file is written, and the reads waiting for more. */
class Fill implements Filling {
  written = 0
  verified = false
  error: StorageError | undefined = undefined
  /** The file at `path` exists (the fill opened it) or the fill ended. */
  created = false
  private waiters: Array<{ end: number; f: (error: StorageError | undefined) => void }> = []
  private creation: Array<() => void> = []
  constructor(readonly path: string, readonly final: string) {}
  whenCreated(f: () => void) {
    if (this.created) return f()
    this.creation.push(f)
  }
  /** The file exists, or the fill ended (verified or failed): whoever waits for it may open a path now. */
  markCreated() {
    this.created = true
    for (const f of this.creation.splice(0)) f()
  }
  private ready(end: number) {
    return this.error !== undefined || this.verified || this.written > end
  }
  whenReady(end: number, f: (error: StorageError | undefined) => void) {
    if (this.ready(end)) return f(this.error)
    this.waiters.push({ end, f })
  }
  /** After more bytes were written, or the fill ended (verified, or `error`). */
  wake() {
    const now = this.waiters.filter((w) => this.ready(w.end))
    if (now.length === 0) return
    this.waiters = this.waiters.filter((w) => !this.ready(w.end))
    for (const w of now) w.f(this.error)
  }
}

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

    /**
     * Streams `source` into the fill's temp file while hashing, telling waiting readers of each write;
     * renames it into place only if the hash matches (else the file goes and the readers get the error).
     */
    const fill = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>, f: Fill) =>
      Effect.gen(function* () {
        const fh = yield* io("cannot write the blob cache", () => open(f.path, "wx", 0o600))
        f.markCreated()
        const digest = createHash("sha256")
        yield* Stream.runForEach(source, (chunk) =>
          io("cannot write the blob cache", async () => {
            digest.update(chunk)
            await fh.write(chunk)
            f.written += chunk.byteLength
            f.wake()
          })
        ).pipe(Effect.ensuring(Effect.promise(() => fh.close())))
        if (digest.digest("hex") !== hash) return yield* new StorageError({ reason: "a stored blob does not match its hash" })
        yield* io("cannot write the blob cache", () => rename(f.path, f.final))
        yield* Effect.promise(() => admit(hash, f.written))
      }).pipe(
        Effect.onExit((exit) =>
          Effect.promise(() => rm(f.path, { force: true })).pipe(
            Effect.zipRight(Effect.sync(() => {
              if (Exit.isSuccess(exit)) f.verified = true
              else f.error = Option.getOrElse(Cause.failureOption(exit.cause), () => new StorageError({ reason: "cannot fill the blob cache", cause: Cause.squash(exit.cause) }))
              f.wake()
              f.markCreated()
            }))
          )
        )
      )

    /** Fills in progress, one per hash: concurrent requests for a blob join it instead of fetching it again. */
    const pending = new Map<string, { fill: Fill; done: Promise<void> }>()

    // A daemon: the session that started it may end; others may be reading it. Run with the registry's
    // runtime (its logger): a blob that cannot be cached is the admin's concern, agents only see a failure.
    const runtime = yield* Effect.runtime<never>()
    const start = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>) => {
      const f = new Fill(path.join(root, `${TMP}${randomBytes(8).toString("hex")}`), path.join(root, hash))
      const logged = fill(hash, source, f).pipe(
        Effect.tapError((e) => Effect.logError(`blob ${hash} cannot be cached: ${e.reason}`))
      )
      const done = Runtime.runPromiseExit(runtime)(logged).then(() => void pending.delete(hash))
      pending.set(hash, { fill: f, done })
      return f
    }

    /**
     * A fill's path once its file exists: the fill opens it asynchronously, and an open of the path before
     * that was ENOENT, which an agent was told as "blob not found" (a cold replica, a small blob). A fill that
     * already ended is served from its final path, or fails with its error.
     */
    const opened = (f: Fill, joined: boolean) =>
      Effect.async<Served & { joined: boolean }, StorageError>((resume) =>
        f.whenCreated(() =>
          resume(
            f.error !== undefined ? Effect.fail(f.error)
            : f.verified ? Effect.succeed({ path: f.final, filling: undefined, joined })
            : Effect.succeed({ path: f.path, filling: f, joined })
          )
        )
      )

    const serve = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>): Effect.Effect<Served & { joined: boolean }, StorageError> =>
      Effect.gen(function* () {
        if (sha256Problem(hash) !== undefined) return yield* new StorageError({ reason: "invalid blob hash" })
        const file = path.join(root, hash)
        const inFlight = pending.get(hash)
        if (inFlight !== undefined) return yield* opened(inFlight.fill, true)
        const e = entries.get(hash)
        if (e !== undefined) {
          entries.delete(hash)
          entries.set(hash, e)
          if (e.verified) return { path: file, filling: undefined, joined: false }
          const ok = yield* io("cannot read the blob cache", () => sha256OfFile(file).then((h) => h === hash, () => false))
          if (ok) {
            e.verified = true
            return { path: file, filling: undefined, joined: false }
          }
          yield* io("cannot clean the blob cache", () => drop(hash))
          const raced = pending.get(hash) // another request started a fill while this one hashed
          if (raced !== undefined) return yield* opened(raced.fill, true)
        }
        return yield* opened(start(hash, source), false)
      })

    /** The whole fill: waits for it; a joined fill that failed is tried again once, as this caller's own. */
    const local = (hash: Sha256, source: Stream.Stream<Uint8Array, StorageError>, again = true): Effect.Effect<string, StorageError> =>
      Effect.gen(function* () {
        // A fill that failed before its file existed fails serve itself: once more, after it left `pending`.
        const retry = (e: StorageError) =>
          again ? Effect.flatMap(Effect.promise(() => pending.get(hash)?.done ?? Promise.resolve()), () => local(hash, source, false)) : Effect.fail(e)
        const s = yield* Effect.either(serve(hash, source))
        if (s._tag === "Left") return yield* retry(s.left)
        if (s.right.filling === undefined) return s.right.path
        const f = s.right.filling
        const error = yield* Effect.async<StorageError | undefined>((resume) => f.whenReady(Number.MAX_SAFE_INTEGER, (e) => resume(Effect.succeed(e))))
        if (error === undefined) return f.final
        return yield* (s.right.joined ? local(hash, source, again) : Effect.fail(error))
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

    return {
      local,
      serve: (hash, source) => Effect.map(serve(hash, source), (s): Served => ({ path: s.path, filling: s.filling })),
      seed,
      remove,
      size: () => total
    } satisfies BlobCache
  })
