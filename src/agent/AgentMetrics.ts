// The agent's metrics (docs/metrics.md "Agent metrics"), recorded with Effect's Metric API where the
// events happen; -metrics-file writes them for node_exporter's textfile collector (MetricsFile.ts).
import { Effect, Metric } from "effect"
import type { Sink } from "../ssh/SftpRead.js"

const P = "deploy_agent_"

export const lastAttempt = Metric.gauge(P + "last_attempt_timestamp_seconds", { description: "end of the last attempt, Unix seconds" })
export const lastSuccess = Metric.gauge(P + "last_success_timestamp_seconds", { description: "end of the last attempt that left the configuration deployed, Unix seconds" })
export const attempts = Metric.counter(P + "attempts_total", { description: "attempts by outcome", incremental: true })
export const downloadBytes = Metric.counter(P + "download_bytes_total", { description: "bytes of layers downloaded", incremental: true })
export const unpackSeconds = Metric.gauge(P + "unpack_seconds", { description: "duration of the last unpack in seconds" })
export const scriptSeconds = Metric.gauge(P + "script_seconds", { description: "duration of the last deploy script run, with its health check, in seconds" })
export const watchConnected = Metric.gauge(P + "watch_connected", { description: "1 while a watch session with the registry is open" })

/** Times `effect` into a seconds gauge. */
export const timed = <A, E, R>(gauge: Metric.Metric.Gauge<number>, effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const start = performance.now()
    return Effect.ensuring(effect, Effect.sync(() => gauge.unsafeUpdate((performance.now() - start) / 1000, [])))
  })

/** A download sink that counts what passes through it into deploy_agent_download_bytes_total. */
export const countingBytes =
  <E>(sink: Sink<E>): Sink<E> =>
  (pieces) => {
    let n = 0
    for (const p of pieces) n += p.length
    downloadBytes.unsafeUpdate(n, [])
    return sink(pieces)
  }
