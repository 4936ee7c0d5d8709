// Background cleanup inside the registry's scope: version retention (-maxver) with removal of blobs no
// version references, and removal of unclaimed uploads older than the TTL. Each runs at start and then
// on a fixed spacing; a failed run is logged and retried on the next tick; closing the scope stops them.
import { Duration, Effect, Layer, Schedule } from "effect"
import { quote } from "../domain/LogText.js"
import { BlobStore } from "./BlobStore.js"
import { asLeader } from "./Leadership.js"
import { RegistryConfig } from "./RegistryConfig.js"
import { bump, janitorFreedBytes, janitorRemovedBlobs, janitorRunsBy } from "./RegistryMetrics.js"
import { retention } from "./Retention.js"
import type { Storage } from "./Storage.js"
import { Uploads } from "./Uploads.js"

export interface JanitorOptions {
  /** Spacing of retention runs; default 5 minutes. */
  readonly retentionEvery?: Duration.DurationInput
  /** Spacing of stale-upload sweeps; default 1 minute. */
  readonly sweepEvery?: Duration.DurationInput
}

/** One retention pass; logs what it removed. */
export const retentionPass = retention.pipe(
  Effect.tap((r) =>
    Effect.all([
      Effect.forEach(r.versions, (v) => Effect.logInfo(`retention: removed version ${quote(v.version)} of ${quote(v.component)} (-maxver)`), { discard: true }),
      r.blobs.length > 0 ? Effect.logInfo(`retention: removed ${r.blobs.length} unreferenced blob(s)`) : Effect.void,
      Effect.sync(() => {
        bump(janitorRemovedBlobs, r.blobs.length)
        bump(janitorFreedBytes, r.freedBytes)
      })
    ])
  )
)

/**
 * One sweep of uploads older than the TTL, and of uploads staged in the blob store (PostgreSQL) that
 * were started or completed longer ago than that (a replica killed mid-upload leaves them); logs how many went.
 */
export const sweepPass = Effect.gen(function* () {
  const uploads = yield* Uploads
  const blobs = yield* BlobStore
  const { uploadTtl } = yield* RegistryConfig
  const n = yield* uploads.sweep(new Date(Date.now() - Duration.toMillis(uploadTtl)))
  if (n > 0) yield* Effect.logInfo(`removed ${n} unclaimed upload(s) older than ${Duration.format(uploadTtl)}`)
  const staged = yield* blobs.sweepStaged(uploadTtl)
  if (staged > 0) yield* Effect.logInfo(`removed ${staged} staged upload(s) in the database older than ${Duration.format(uploadTtl)}`)
  return n + staged
})

const every = <A, E, R>(name: string, task: Effect.Effect<A, E, R>, spacing: Duration.DurationInput, runs: (typeof janitorRunsBy)[keyof typeof janitorRunsBy]) =>
  task.pipe(
    Effect.tap(() => Effect.sync(() => bump(runs.ok))),
    Effect.catchAllCause((cause) => Effect.zipRight(Effect.sync(() => bump(runs.error)), Effect.logError(`${name} failed`, cause))),
    Effect.repeat(Schedule.spaced(spacing))
  )

export const JanitorLive = (
  opts: JanitorOptions = {}
): Layer.Layer<never, never, Storage | BlobStore | Uploads | RegistryConfig> =>
  Layer.scopedDiscard(
    // Replicas on one database: only the leader cleans up (Leadership.ts).
    Effect.all([
      Effect.forkScoped(asLeader("retention", every("retention", retentionPass, opts.retentionEvery ?? "5 minutes", janitorRunsBy.retention))),
      Effect.forkScoped(asLeader("upload sweep", every("upload sweep", sweepPass, opts.sweepEvery ?? "1 minute", janitorRunsBy.upload_sweep)))
    ])
  )
