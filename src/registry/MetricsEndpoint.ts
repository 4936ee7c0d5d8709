// deploy-registry -metrics: the /metrics endpoint with the registry's read-on-scrape gauges. main.ts
// imports this module only when -metrics is given, so the exporter libraries load only then.
import { Effect, Layer, Metric } from "effect"
import type { StorageError } from "../domain/Errors.js"
import { VERSION } from "../domain/Version.js"
import { serveMetrics } from "../metrics/MetricsServer.js"
import { BlobStore } from "./BlobStore.js"
import { HostStatus } from "./HostStatus.js"
import { blobBytesStored, blobsStored, HOST_STATES, hostsGauge, touchAll } from "./RegistryMetrics.js"
import { counts } from "./StatusView.js"
import { Storage } from "./Storage.js"

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

/** Hosts by configuration and state, as `status` counts them; a deleted configuration's series go to 0. */
const hostGauges = Effect.gen(function* () {
  const storage = yield* Storage
  const hosts = yield* HostStatus
  const seen = new Set<string>()
  const set = (configuration: string, state: string, n: number) =>
    hostsGauge.pipe(Metric.tagged("configuration", configuration), Metric.tagged("state", state)).unsafeUpdate(n, [])
  return Effect.gen(function* () {
    const [states, rows] = yield* Effect.zip(storage.currentStates, hosts.rows())
    const byConfiguration = new Map<string, Array<(typeof rows)[number]>>()
    for (const r of rows) {
      const list = byConfiguration.get(r.configuration)
      if (list) list.push(r)
      else byConfiguration.set(r.configuration, [r])
    }
    const gone = new Set(seen)
    for (const s of states) {
      gone.delete(s.configuration)
      seen.add(s.configuration)
      const c = counts(byConfiguration.get(s.configuration) ?? [], s.hash)
      for (const state of HOST_STATES) set(s.configuration, state, c[state])
    }
    for (const name of gone) for (const state of HOST_STATES) set(name, state, 0)
  }).pipe(Effect.catchAll((e) => Effect.logWarning(`metrics: cannot count hosts: ${e.reason}`)))
})

export const MetricsEndpointLive = (address: { readonly host: string; readonly port: number }) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      touchAll()
      const refresh = Effect.zipRight(yield* blobGauges, yield* hostGauges)
      const bound = yield* serveMetrics({ ...address, service: { name: "deploy-registry", version: VERSION }, refresh })
      const host = bound.host.includes(":") ? `[${bound.host}]` : bound.host
      yield* Effect.logInfo(`metrics on http://${host}:${bound.port}/metrics`)
    })
  )
