// Content-addressed blobs under <dir>/files/<sha256>: written once (temp file, fsync, rename), never modified.
// A service so that another store can replace the filesystem: PostgreSQL with -db (PgBlobStore.ts).
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Context, type Duration, Effect, Layer, Stream } from "effect"
import { createReadStream } from "node:fs"
import { mkdir, readdir, rename, stat, unlink } from "node:fs/promises"
import * as path from "node:path"
import { StorageError } from "../domain/Errors.js"
import { type Sha256, sha256Problem } from "../domain/Names.js"
import { fsyncDir } from "../fs/Atomic.js"
import { RegistryConfig } from "./RegistryConfig.js"

/** A blob still arriving in a local file (a cache fill); see BlobCache.ts. */
export interface Filling {
  /**
   * Calls `f` once bytes [0, end) of the file may be served: written, and either more bytes follow or the
   * whole blob was verified (so the end of a blob is never served before its hash matched); with the
   * error if the fill failed.
   */
  readonly whenReady: (end: number, f: (error: StorageError | undefined) => void) => void
  /** The file's path once the fill succeeded (it is renamed there from the path being filled). */
  readonly final: string
}

/** A local file to serve a blob from with positioned reads, and its fill when it is still arriving. */
export interface Served {
  readonly path: string
  readonly filling: Filling | undefined
}

/**
 * Where an upload's bytes also go while they arrive, so that `adopt` need not write them then
 * (PostgreSQL: staged chunk rows, PgUploadStage.ts; on disk nothing: the staged file is the blob).
 */
export interface UploadStage {
  /** The upload's next bytes, in order; copied (they may be a view into a packet). */
  readonly push: (bytes: Uint8Array) => void
  /** Calls `f` once the bytes pushed and not yet stored are within the stage's bound (at once if they are, or if the stage gave up). */
  readonly whenRoom: (f: () => void) => void
  /**
   * All `size` bytes, hashing to `hash`, were pushed: stores the rest and records the staged upload as
   * complete. Never fails: a stage that could not (the database away) is dropped, and `adopt` then
   * writes the blob from the staged file.
   */
  readonly complete: (hash: Sha256, size: number) => Effect.Effect<void>
  /** The upload will not complete this way (interrupted, failed, bytes out of order): its staged rows go. Never fails. */
  readonly abandon: Effect.Effect<void>
}

/** The stage of a store that keeps nothing while an upload arrives. */
export const noStage: UploadStage = { push: () => undefined, whenRoom: (f) => f(), complete: () => Effect.void, abandon: Effect.void }

export interface BlobInfo {
  readonly hash: Sha256
  readonly size: number
  readonly mtime: Date
}

export class BlobStore extends Context.Tag("registry/BlobStore")<
  BlobStore,
  {
    readonly has: (hash: Sha256) => Effect.Effect<boolean, StorageError>
    readonly stat: (hash: Sha256) => Effect.Effect<BlobInfo | undefined, StorageError>
    /**
     * A local file holding the blob, for serving it with positioned reads (SFTP): the stored file itself
     * here, a verified cached copy when the blobs live elsewhere (PgBlobStore).
     */
    readonly local: (hash: Sha256) => Effect.Effect<string, StorageError>
    /** As `local`, without waiting for a cache fill: SFTP serves the bytes as they arrive (Filling). */
    readonly serve: (hash: Sha256) => Effect.Effect<Served, StorageError>
    readonly stream: (hash: Sha256) => Stream.Stream<Uint8Array, StorageError>
    /**
     * Stores an already fsync'd file whose content hashes to `hash`, inside the caller's Storage transaction
     * (here: rename, then fsync of files/; PgBlobStore: the upload's staged rows linked to the blob, or
     * rows written from the file, in that transaction).
     */
    readonly adopt: (tempPath: string, hash: Sha256) => Effect.Effect<void, StorageError>
    /** A stage for an upload starting now (UploadStage). */
    readonly stageUpload: Effect.Effect<UploadStage>
    /** Removes staged uploads (not their local files: Uploads) started or completed longer than `ttl` ago; how many. */
    readonly sweepStaged: (ttl: Duration.Duration) => Effect.Effect<number, StorageError>
    readonly remove: (hash: Sha256) => Effect.Effect<void, StorageError>
    readonly list: Effect.Effect<ReadonlyArray<Sha256>, StorageError>
  }
>() {}

/** A filesystem call as an Effect; `reason` is what the operator may see (never a path). */
export const io = <A>(reason: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new StorageError({ reason, cause }) })

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT"

/** Guards every path built from a hash: only 64 lowercase hex characters ever reach the filesystem. */
const checked = (hash: string) =>
  sha256Problem(hash) === undefined ? Effect.succeed(hash) : Effect.fail(new StorageError({ reason: "invalid blob hash" }))

export const make = (dir: string) =>
  Effect.gen(function* () {
    const files = path.join(dir, "files")
    yield* io("cannot create the blob directory", () => mkdir(files, { recursive: true }))

    const local = (hash: Sha256) => Effect.map(checked(hash), (h) => path.join(files, h))

    const statBlob = (hash: Sha256) =>
      Effect.flatMap(checked(hash), () =>
        io("cannot read the blob store", async (): Promise<BlobInfo | undefined> => {
          try {
            const s = await stat(path.join(files, hash))
            return { hash, size: s.size, mtime: s.mtime }
          } catch (e) {
            if (isMissing(e)) return undefined
            throw e
          }
        })
      )

    const has = (hash: Sha256) => Effect.map(statBlob(hash), (s) => s !== undefined)

    const stream = (hash: Sha256) =>
      Stream.unwrap(
        Effect.map(checked(hash), (h) =>
          NodeStream.fromReadable<StorageError>(
            () => createReadStream(path.join(files, h)),
            (cause) => new StorageError({ reason: isMissing(cause) ? "blob not found" : "cannot read a blob", cause })
          )
        )
      )

    // Written once: when the blob is already there the identical temp copy is dropped, never renamed over it.
    const adopt = (tempPath: string, hash: Sha256) =>
      Effect.flatMap(checked(hash), (h) =>
        io("cannot store a blob", async () => {
          const target = path.join(files, h)
          try {
            await stat(target)
            await unlink(tempPath)
            return
          } catch (e) {
            if (!isMissing(e)) throw e
          }
          await rename(tempPath, target)
          await fsyncDir(files)
        })
      )

    const remove = (hash: Sha256) =>
      Effect.flatMap(checked(hash), (h) =>
        io("cannot remove a blob", async () => {
          try {
            await unlink(path.join(files, h))
          } catch (e) {
            if (!isMissing(e)) throw e
          }
        })
      )

    const list = io("cannot list the blob store", async () =>
      (await readdir(files)).filter((n) => sha256Problem(n) === undefined).sort() as Array<Sha256>
    )

    const serve = (hash: Sha256) => Effect.map(local(hash), (p): Served => ({ path: p, filling: undefined }))

    return BlobStore.of({
      has, stat: statBlob, local, serve, stream, adopt, stageUpload: Effect.succeed(noStage), sweepStaged: () => Effect.succeed(0), remove, list
    })
  })

/** Blobs in `<RegistryConfig.dir>/files` (created at start). */
export const BlobStoreLive = Layer.effect(
  BlobStore,
  Effect.flatMap(RegistryConfig, (c) => make(c.dir))
)
