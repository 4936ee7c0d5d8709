// Content-addressed blobs under <dir>/files/<sha256>: written once (temp file, fsync, rename), never modified.
// A service so that an object store can replace the filesystem later (DESIGN.md).
import { Context, type Effect, type Stream } from "effect"
import type { StorageError } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"

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
    /** Absolute path of a stored blob, for serving it with positioned reads (SFTP). */
    readonly path: (hash: Sha256) => string
    readonly stream: (hash: Sha256) => Stream.Stream<Uint8Array, StorageError>
    /** Moves an already fsync'd file whose content hashes to `hash` into the store (rename, then fsync of files/). */
    readonly adopt: (tempPath: string, hash: Sha256) => Effect.Effect<void, StorageError>
    readonly remove: (hash: Sha256) => Effect.Effect<void, StorageError>
    readonly list: Effect.Effect<ReadonlyArray<Sha256>, StorageError>
  }
>() {}
