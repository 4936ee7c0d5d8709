// The staging area <dir>/uploads: SFTP writes land in a temp file there; a finished upload is
// recorded by its sha256 (durably: a restart between upload and `addver` loses nothing).
//
// Names in uploads/: `<sha256>` is a completed, claimable upload (its mtime is when it completed);
// `.tmp-<pid>-<boot>-<random>` is an upload in progress of process <pid>. Temp files of processes
// that no longer run are garbage (removed at start and by `sweep`).
import { Context, Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { mkdir, readdir, rename, stat, unlink, utimes, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { StorageError, UploadNotFound } from "../domain/Errors.js"
import { type Sha256, sha256Problem } from "../domain/Names.js"
import { fsyncDir, fsyncFile } from "../fs/Atomic.js"
import { io } from "./BlobStore.js"
import { RegistryConfig } from "./RegistryConfig.js"

export class Uploads extends Context.Tag("registry/Uploads")<
  Uploads,
  {
    /** A fresh temp file path inside the staging area for an upload in progress (not claimable). */
    readonly tempPath: Effect.Effect<string, StorageError>
    /** Records a fully written temp file as the upload of `hash` (fsync, rename to its hash name). */
    readonly complete: (tempPath: string, hash: Sha256) => Effect.Effect<void, StorageError>
    /** Removes an abandoned temp file; never fails. */
    readonly discard: (tempPath: string) => Effect.Effect<void>
    /** Path of a completed upload, or UploadNotFound. */
    readonly find: (hash: Sha256) => Effect.Effect<string, UploadNotFound | StorageError>
    /** Removes completed uploads older than the TTL and temp files left by a previous process. */
    readonly sweep: (olderThan: Date) => Effect.Effect<number, StorageError>
    /** Hashes of the completed, unclaimed uploads. */
    readonly list: Effect.Effect<ReadonlyArray<Sha256>, StorageError>
    /** Stages `bytes` as a completed upload (tests, tools); the caller vouches that `hash` is their sha256. */
    readonly stage: (bytes: Uint8Array, hash: Sha256) => Effect.Effect<void, StorageError>
  }
>() {}

const TMP_PREFIX = ".tmp-"

const isMissing = (e: unknown) => (e as NodeJS.ErrnoException | undefined)?.code === "ENOENT"

const alive = (pid: number) => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM" // exists, owned by someone else
  }
}

/** Tells this process from an earlier one with the same pid (a container's pid 1 restarted). */
const BOOT = randomBytes(4).toString("hex")

/** A temp file whose writer is gone: its pid is not running, or it is ours but from an earlier boot. */
const orphanTemp = (name: string) => {
  if (!name.startsWith(TMP_PREFIX)) return false
  const [pidText, boot] = name.slice(TMP_PREFIX.length).split("-")
  const pid = Number(pidText)
  if (!Number.isInteger(pid) || pid <= 0) return true
  return pid === process.pid ? boot !== BOOT : !alive(pid)
}

const removeQuietly = async (p: string) => {
  try {
    await unlink(p)
    return true
  } catch (e) {
    if (isMissing(e)) return false
    throw e
  }
}

export const make = (dir: string) =>
  Effect.gen(function* () {
    const uploads = path.join(dir, "uploads")
    yield* io("cannot create the upload directory", () => mkdir(uploads, { recursive: true }))

    /** Only paths we handed out (inside uploads/, temp-named) may be completed or discarded. */
    const ownTemp = (p: string) => path.dirname(p) === uploads && path.basename(p).startsWith(TMP_PREFIX)

    const tempPath = Effect.sync(() => path.join(uploads, `${TMP_PREFIX}${process.pid}-${BOOT}-${randomBytes(8).toString("hex")}`))

    const complete = (tempPath: string, hash: Sha256) =>
      sha256Problem(hash) !== undefined || !ownTemp(tempPath)
        ? Effect.fail(new StorageError({ reason: "invalid upload" }))
        : io("cannot record an upload", async () => {
            await fsyncFile(tempPath)
            const now = new Date()
            await utimes(tempPath, now, now) // the 30-minute TTL counts from completion
            await rename(tempPath, path.join(uploads, hash))
            await fsyncDir(uploads)
          })

    const discard = (tempPath: string) =>
      ownTemp(tempPath) ? io("", () => removeQuietly(tempPath)).pipe(Effect.ignore) : Effect.void

    const find = (hash: Sha256) =>
      sha256Problem(hash) !== undefined
        ? Effect.fail(new UploadNotFound({ hash }))
        : io("cannot read the upload directory", async () => {
            const p = path.join(uploads, hash)
            try {
              return (await stat(p)).isFile() ? p : undefined
            } catch (e) {
              if (isMissing(e)) return undefined
              throw e
            }
          }).pipe(Effect.flatMap((p) => (p === undefined ? Effect.fail(new UploadNotFound({ hash })) : Effect.succeed(p))))

    const sweep = (olderThan: Date) =>
      io("cannot clean the upload directory", async () => {
        let removed = 0
        for (const name of await readdir(uploads)) {
          const p = path.join(uploads, name)
          if (orphanTemp(name)) {
            if (await removeQuietly(p)) removed++
          } else if (sha256Problem(name) === undefined) {
            try {
              if ((await stat(p)).mtime < olderThan && (await removeQuietly(p))) removed++
            } catch (e) {
              if (!isMissing(e)) throw e // claimed meanwhile
            }
          }
        }
        return removed
      })

    const list = io("cannot read the upload directory", async () =>
      (await readdir(uploads)).filter((n) => sha256Problem(n) === undefined).sort() as Array<Sha256>
    )

    const stage = (bytes: Uint8Array, hash: Sha256) =>
      Effect.flatMap(tempPath, (p) =>
        io("cannot record an upload", () => writeFile(p, bytes)).pipe(
          Effect.zipRight(complete(p, hash)),
          Effect.tapError(() => discard(p))
        )
      )

    // Temp files of dead processes (a crash mid-upload) go at start; completed uploads wait for their TTL.
    yield* sweep(new Date(0))

    return Uploads.of({ tempPath, complete, discard, find, sweep, list, stage })
  })

/** The staging area `<RegistryConfig.dir>/uploads` (created at start; dead processes' temp files removed). */
export const UploadsLive = Layer.effect(
  Uploads,
  Effect.flatMap(RegistryConfig, (c) => make(c.dir))
)
