// The staging area <dir>/uploads: SFTP writes land in a temp file there; a finished upload is
// recorded by its sha256 (durably: a restart between upload and `addver` loses nothing).
import { Context, type Effect } from "effect"
import type { StorageError, UploadNotFound } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"

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
  }
>() {}
