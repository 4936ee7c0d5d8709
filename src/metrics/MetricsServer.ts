// The /metrics endpoint: a plain node:http server for the scope's lifetime. GET /metrics answers in the
// Prometheus text format, or OpenMetrics when the scraper's Accept asks for it (Prometheus does). Before
// each render `refresh` sets the gauges that are read rather than recorded (process, stored blobs, hosts).
import { Effect, Runtime, type Scope } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { StartupError } from "../domain/StartupError.js"
import { makeExposition, OPENMETRICS_TYPE, TEXT_TYPE } from "./LoadExposition.js"
import { makeProcessSampler } from "./ProcessMetrics.js"

export interface MetricsServerOptions {
  readonly host: string
  readonly port: number
  readonly service: { readonly name: string; readonly version: string }
  /** Sets read-on-scrape gauges; runs before every scrape. */
  readonly refresh: Effect.Effect<void>
}

/** Whether the Accept header prefers OpenMetrics (any mention: Prometheus lists it first). */
export const wantsOpenMetrics = (accept: string | undefined): boolean => accept !== undefined && /application\/openmetrics-text/i.test(accept)

/** Listens until the scope closes; the bound address (port 0 picks one). */
export const serveMetrics = (opts: MetricsServerOptions): Effect.Effect<{ readonly host: string; readonly port: number }, StartupError, Scope.Scope> =>
  Effect.gen(function* () {
    const exposition = yield* makeExposition(opts.service)
    const sample = yield* makeProcessSampler
    const runtime = yield* Effect.runtime<never>()
    const scrape = (openMetrics: boolean) =>
      Runtime.runPromise(runtime)(Effect.zipRight(Effect.zipRight(sample, opts.refresh), Effect.promise(() => exposition.render(openMetrics))))

    const server = http.createServer((req, res) => {
      const path = (req.url ?? "").split("?")[0]
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found; metrics are at /metrics\n")
        return
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end()
        return
      }
      const openMetrics = wantsOpenMetrics(req.headers.accept)
      scrape(openMetrics).then(
        (body) => {
          res.writeHead(200, { "content-type": openMetrics ? OPENMETRICS_TYPE : TEXT_TYPE, "cache-control": "no-store" })
          res.end(req.method === "HEAD" ? undefined : body)
        },
        () => {
          res.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("metrics collection failed\n")
        }
      )
    })
    // What a scraper can make us hold: a few connections, short timeouts.
    server.maxConnections = 16
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000
    server.keepAliveTimeout = 60_000

    const bound = yield* Effect.async<AddressInfo, StartupError>((resume) => {
      const onError = (e: NodeJS.ErrnoException) =>
        resume(Effect.fail(new StartupError({ message: `cannot listen for -metrics on ${opts.host}:${opts.port}: ${e.code ?? e.message}` })))
      server.once("error", onError)
      server.listen(opts.port, opts.host, () => {
        server.off("error", onError)
        resume(Effect.succeed(server.address() as AddressInfo))
      })
    })
    server.on("error", () => undefined)
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    return { host: opts.host, port: bound.port }
  })
