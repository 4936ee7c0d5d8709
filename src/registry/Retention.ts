// Retention and garbage collection, as Effects; the Janitor decides when they run.
import { Effect } from "effect"
import type { StorageError } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import { BlobStore } from "./BlobStore.js"
import { RegistryConfig } from "./RegistryConfig.js"
import { Storage, type VersionInfo } from "./Storage.js"
import { Uploads } from "./Uploads.js"

export interface RetentionReport {
  readonly versions: ReadonlyArray<VersionInfo>
  readonly blobs: ReadonlyArray<Sha256>
  /** Bytes the removed blobs held (for the janitor's metric). */
  readonly freedBytes: number
}

/**
 * Per component keeps the `maxVersions` newest versions plus every version a current configuration
 * uses; removes the rest (one transaction). At least one version is always kept, so a component just
 * uploaded never disappears before it is used.
 */
export const pruneVersions: Effect.Effect<ReadonlyArray<VersionInfo>, StorageError, Storage | RegistryConfig> = Effect.gen(
  function* () {
    const storage = yield* Storage
    const { maxVersions } = yield* RegistryConfig
    return yield* storage.pruneVersions(Math.max(1, maxVersions))
  }
)

/**
 * Removes blobs that no version references and no pending upload carries. Runs inside a Storage
 * transaction: the registry's database connection is exclusive while it runs, so an `addver`
 * cannot record a version of a blob between the check and the removal.
 */
export const removeUnreferencedBlobs: Effect.Effect<{ readonly blobs: ReadonlyArray<Sha256>; readonly freedBytes: number }, StorageError, Storage | BlobStore | Uploads> = Effect.gen(
  function* () {
    const storage = yield* Storage
    const blobs = yield* BlobStore
    const uploads = yield* Uploads
    return yield* storage.transaction(
      Effect.gen(function* () {
        const referenced = new Set<string>((yield* storage.allVersions).map((v) => v.hash))
        const pending = new Set<string>(yield* uploads.list)
        const doomed = (yield* blobs.list).filter((h) => !referenced.has(h) && !pending.has(h))
        let freedBytes = 0
        for (const hash of doomed) {
          freedBytes += (yield* blobs.stat(hash))?.size ?? 0
          yield* blobs.remove(hash)
        }
        return { blobs: doomed, freedBytes }
      })
    )
  }
)

/** Version retention, then blob collection; reports what went. */
export const retention: Effect.Effect<RetentionReport, StorageError, Storage | BlobStore | Uploads | RegistryConfig> = Effect.gen(
  function* () {
    const versions = yield* pruneVersions
    const removed = yield* removeUnreferencedBlobs
    return { versions, ...removed }
  }
)
