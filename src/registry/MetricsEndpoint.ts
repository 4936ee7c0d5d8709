// deploy-registry -metrics: the /metrics endpoint with the registry's read-on-scrape gauges. main.ts
// imports this module only when -metrics is given, so the exporter libraries load only then.
import { Effect, Layer } from "effect"
import type { StorageError } from "../domain/Errors.js"
import { VERSION } from "../domain/Version.js"
import { serveMetrics } from "../metrics/MetricsServer.js"
import { BlobStore } from "./BlobStore.js"
import { blobBytesStored, blobsStored, touchAll } from "./RegistryMetrics.js"

/** Listing and stat-ing every blob costs a directory walk: at most once a minute, whatever the scrape rate. */
const BLOB_SCAN_EVERY_MS = 60_000

const blobGauges = Effect.gen(function* () {
  const blobs = yield* BlobStore
  let scannedAt = -Infinity
  const scan = Effect.gen(function* () {
    const hashes = yield* blobs.list
    let bytes = 0
    for (const h of hashes) bytes += (yield* blobs.stat(h))?.size ?? 0
    blobsStored.unsafeUpdate(hashes.length, [])
    blobBytesStored.unsafeUpdate(bytes, [])
  })
  return Effect.suspend(() => {
    if (Date.now() - scannedAt < BLOB_SCAN_EVERY_MS) return Effect.void
    scannedAt = Date.now()
    return scan.pipe(Effect.catchAll((e: StorageError) => Effect.logWarning(`metrics: cannot count blobs: ${e.reason}`)))
  })
})

export const MetricsEndpointLive = (address: { readonly host: string; readonly port: number }) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      touchAll()
      const refresh = yield* blobGauges
      const bound = yield* serveMetrics({ ...address, service: { name: "deploy-registry", version: VERSION }, refresh })
      const host = bound.host.includes(":") ? `[${bound.host}]` : bound.host
      yield* Effect.logInfo(`metrics on http://${host}:${bound.port}/metrics`)
    })
  )
