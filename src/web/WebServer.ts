// `deployctl web`'s HTTP server (node:http in a scoped Effect): every request passes Session's checks
// (Host, token → cookie, cookie, Origin; CSRF on POST), carries the security headers, and is answered
// from the registry through the RegistryLink. Routes:
//   GET  /                      fleet                  GET /c/NAME           configuration (?state, sort, page)
//   GET  /c/NAME/timeline       timeline (SVG)         GET /events           server-sent events (the registry's `events` lines)
//   GET  /assets/FILE           the bundled CSS/JS     POST /c/NAME/rollback  rollback -to HASH -expect CURRENT
//   POST /c/NAME/rollout/(pause|resume|abort)
// `?fragment=1` renders only the page's live part (app.js swaps it in after an event).
// Limits: connections, request headers and body size, time per request, SSE clients and what each may
// leave unread.
import { Effect, FiberSet, type Scope } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import * as http from "node:http"
import type * as net from "node:net"
import { fileURLToPath } from "node:url"
import { configurationNameProblem, sha256Problem } from "../domain/Names.js"
import type { RegistryLink } from "./RegistryLink.js"
import { makeSession, securityHeaders } from "./Session.js"
import { type Action, configurationData, type DataError, fleetData, makeFleetCache, runAction, timelineData } from "./WebServerData.js"
import type { ConfigurationData, FleetData, PageContext, TimelineData } from "./WebModel.js"

/** The page renderers (src/web/pages, wired in WebServerPages.ts). */
export interface Pages {
  readonly fleet: (data: FleetData, ctx: PageContext) => string
  readonly configuration: (data: ConfigurationData, ctx: PageContext) => string
  readonly timeline: (data: TimelineData, ctx: PageContext) => string
  readonly error: (status: number, text: string, ctx: PageContext) => string
}

export interface WebOptions {
  readonly host: string
  readonly port: number
  readonly pages: Pages
  /** Where the bundled assets are (default dist/web/assets beside this module or the bundle). */
  readonly assetsDir?: string
}

const MAX_CONNECTIONS = 64
const MAX_SSE_CLIENTS = 32
/** Bytes an event-stream client may leave unread before it is cut off (it reconnects and reads the page again). */
const MAX_SSE_UNREAD = 1024 * 1024
const MAX_BODY = 16 * 1024
const SSE_KEEPALIVE_MS = 15_000

const types: Readonly<Record<string, string>> = {
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  woff2: "font/woff2"
}

/** The bundled assets, read once: only plain file names with a known type are served. */
const loadAssets = (dir: string): ReadonlyMap<string, { readonly body: Buffer; readonly type: string }> => {
  const out = new Map<string, { body: Buffer; type: string }>()
  let names: Array<string> = []
  try {
    names = readdirSync(dir)
  } catch {
    return out // a build without assets: pages still work without script and style
  }
  for (const name of names) {
    const type = types[name.slice(name.lastIndexOf(".") + 1)]
    if (type !== undefined && /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(name)) out.set(name, { body: readFileSync(`${dir}/${name}`), type })
  }
  return out
}

const defaultAssetsDir = () => fileURLToPath(new URL("../web/assets/", import.meta.url))

type Res = http.ServerResponse

const send = (res: Res, status: number, body: string | Buffer, type = "text/html; charset=utf-8", extra: Record<string, string> = {}) => {
  if (res.headersSent) return void res.end()
  res.writeHead(status, { ...securityHeaders, "Content-Type": type, "Content-Length": String(Buffer.byteLength(body)), ...extra })
  res.end(body)
}

const readForm = (req: http.IncomingMessage) =>
  Effect.async<URLSearchParams | "too large" | "not a form">((resume) => {
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
    if (type !== "application/x-www-form-urlencoded") return resume(Effect.succeed("not a form"))
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        req.destroy()
        resume(Effect.succeed("too large"))
      } else chunks.push(c)
    })
    req.once("end", () => resume(Effect.succeed(new URLSearchParams(Buffer.concat(chunks).toString("utf8")))))
    req.once("error", () => resume(Effect.succeed("too large")))
  })

/** Path segments, each percent-decoded; undefined when one cannot be. */
const segments = (pathname: string): ReadonlyArray<string> | undefined => {
  try {
    return pathname.split("/").slice(1).map(decodeURIComponent)
  } catch {
    return undefined
  }
}

const pagePath = (name: string) => `/c/${encodeURIComponent(name)}`

/** Notices a redirect after a successful button may name (fixed texts: nothing from the URL is shown). */
const doneNotices: Readonly<Record<string, string>> = {
  rollback: "Rolled back: this is the configuration's current state now.",
  pause: "Rollout paused.",
  resume: "Rollout resumed.",
  abort: "Rollout aborted: every host is served the previous state again."
}

export const serveWeb = (link: RegistryLink["Type"], options: WebOptions): Effect.Effect<{ readonly url: string; readonly port: number }, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const assets = loadAssets(options.assetsDir ?? defaultAssetsDir())
    const pages = options.pages
    const sockets = new Set<net.Socket>()
    let sseClients = 0

    const server = yield* Effect.acquireRelease(
      Effect.async<http.Server, Error>((resume) => {
        const srv = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 })
        srv.maxConnections = MAX_CONNECTIONS
        srv.once("error", (e) => resume(Effect.fail(new Error(`cannot listen on ${options.host}:${options.port}: ${e.message}`))))
        srv.listen({ host: options.host, port: options.port }, () => resume(Effect.succeed(srv)))
      }),
      (srv) =>
        Effect.async<void>((resume) => {
          srv.close(() => resume(Effect.void))
          for (const s of sockets) s.destroy() // open event streams and keep-alive connections
        })
    )
    server.on("connection", (s: net.Socket) => {
      sockets.add(s)
      s.once("close", () => sockets.delete(s))
    })
    const port = (server.address() as net.AddressInfo).port
    const s = makeSession({ host: options.host, port })
    const runFork = yield* FiberSet.makeRuntime<never>()
    // The fleet page's per-configuration details, dropped by the events that change them.
    const fleetCache = makeFleetCache()
    const cacheEvents = yield* link.events
    yield* Effect.forkScoped(Effect.forever(Effect.map(cacheEvents.takeBetween(1, 1024), (ls) => { for (const l of ls) fleetCache.forget(l) })))

    const ctxOf = (url: URL, extra: Partial<PageContext> = {}): PageContext => {
      const query = new URLSearchParams(url.searchParams)
      const fragment = query.get("fragment") === "1"
      query.delete("fragment")
      const done = query.get("done")
      query.delete("done")
      const text = done !== null ? doneNotices[done] : undefined
      return { csrf: s.csrf, now: new Date(), query, ...(fragment ? { fragment } : {}), ...(text !== undefined ? { notice: { kind: "ok", text } } : {}), ...extra }
    }

    const failPage = (res: Res, url: URL, e: DataError, notFoundName?: string) => {
      const status = e._tag === "Refused" ? (notFoundName !== undefined && /not found/.test(e.message) ? 404 : 409) : 502
      const text = e._tag === "SshError" ? `the registry cannot be reached: ${e.message}` : e.message
      return Effect.sync(() => send(res, status, pages.error(status, text, ctxOf(url))))
    }

    const page = <A>(res: Res, url: URL, data: Effect.Effect<A, DataError>, render: (a: A, ctx: PageContext) => string, name?: string) =>
      data.pipe(
        Effect.flatMap((a) => Effect.sync(() => send(res, 200, render(a, ctxOf(url))))),
        Effect.catchAll((e) => failPage(res, url, e, name))
      )

    const events = (req: http.IncomingMessage, res: Res) =>
      Effect.scoped(
        Effect.gen(function* () {
          if (sseClients >= MAX_SSE_CLIENTS) return send(res, 503, "too many event streams open\n", "text/plain; charset=utf-8")
          sseClients++
          yield* Effect.addFinalizer(() => Effect.sync(() => void sseClients--))
          const lines = yield* link.events
          res.writeHead(200, { ...securityHeaders, "Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no" })
          res.write("retry: 2000\n\n")
          const timer = setInterval(() => res.write(": keepalive\n\n"), SSE_KEEPALIVE_MS)
          yield* Effect.addFinalizer(() => Effect.sync(() => {
            clearInterval(timer)
            res.end()
          }))
          const closed = Effect.async<void>((resume) => {
            req.once("close", () => resume(Effect.void))
            res.once("close", () => resume(Effect.void))
          })
          // Ends when the client leaves more than MAX_SSE_UNREAD unread (it reconnects and reads the page again).
          const forward = Effect.gen(function* () {
            for (;;) {
              const ls = yield* lines.takeBetween(1, 256)
              // Lines are one JSON object each; a stray CR or LF would end the SSE field early.
              for (const l of ls) {
                fleetCache.forget(l) // before the tab hears of it: its next read must not get what the event changed
                res.write(`data: ${l.replace(/[\r\n]/g, "")}\n\n`)
              }
              if (res.writableLength > MAX_SSE_UNREAD) return
            }
          })
          yield* Effect.raceFirst(closed, forward)
        })
      )

    const action = (req: http.IncomingMessage, res: Res, url: URL, name: string, act: Omit<Action, "name"> | undefined) =>
      Effect.gen(function* () {
        const form = yield* readForm(req)
        if (form === "too large") return send(res, 413, "request too large\n", "text/plain; charset=utf-8")
        if (form === "not a form") return send(res, 415, "a form post is expected\n", "text/plain; charset=utf-8")
        if (!s.csrfOk(form)) return send(res, 403, pages.error(403, "this form is not from this page (CSRF token): reload the page", ctxOf(url)))
        if (act === undefined) return send(res, 404, pages.error(404, "no such page", ctxOf(url)))
        let a: Action
        if (act._tag === "rollback") {
          const hash = (form.get("hash") ?? "").toLowerCase()
          const expect = (form.get("expect") ?? "").toLowerCase()
          if (sha256Problem(hash) !== undefined || sha256Problem(expect) !== undefined) {
            return send(res, 400, pages.error(400, "a rollback needs the state's hash and the current hash shown on the page", ctxOf(url)))
          }
          a = { _tag: "rollback", name, hash, expect }
        } else a = { ...(act as Extract<Action, { _tag: "rollout" }>), name }
        const step = a._tag === "rollback" ? "rollback" : a.step
        const back = new URL(pagePath(name), s.origin)
        const outcome = yield* Effect.either(runAction(link, a))
        if (outcome._tag === "Right") return send(res, 303, "", "text/plain; charset=utf-8", { Location: `${pagePath(name)}?done=${step}` })
        const e = outcome.left
        if (e._tag !== "Refused") return yield* failPage(res, back, e)
        // Refused (a stale -expect, a rollout that is over…): the page again, with the registry's message.
        const notice = { kind: "error" as const, text: e.message }
        const data = yield* Effect.either(configurationData(link, name))
        if (data._tag === "Left") return send(res, 409, pages.error(409, e.message, ctxOf(back)))
        send(res, 409, pages.configuration(data.right, ctxOf(back, { notice })))
      })

    const route = (req: http.IncomingMessage, res: Res): Effect.Effect<void> =>
      Effect.suspend(() => {
        const url = new URL(req.url ?? "/", s.origin)
        const verdict = s.check({
          method: req.method ?? "GET",
          url,
          host: req.headers.host,
          origin: req.headers.origin,
          fetchSite: typeof req.headers["sec-fetch-site"] === "string" ? req.headers["sec-fetch-site"] : undefined,
          cookie: req.headers.cookie
        })
        if (verdict._tag === "Refused") return Effect.sync(() => send(res, verdict.status, `${verdict.reason}\n`, "text/plain; charset=utf-8"))
        if (verdict._tag === "Exchange") {
          return Effect.sync(() => send(res, 303, "", "text/plain; charset=utf-8", { "Set-Cookie": verdict.setCookie, Location: verdict.location }))
        }
        const parts = segments(url.pathname)
        const notFound = () => Effect.sync(() => send(res, 404, pages.error(404, "no such page", ctxOf(url))))
        if (parts === undefined) return notFound()
        const [first, name, sub, step, ...rest] = parts
        const validName = name !== undefined && configurationNameProblem(name) === undefined
        if (req.method === "POST") {
          if (first !== "c" || !validName || rest.length > 0) return action(req, res, url, "", undefined)
          if (sub === "rollback" && step === undefined) return action(req, res, url, name, { _tag: "rollback" } as Omit<Action, "name">)
          if (sub === "rollout" && (step === "pause" || step === "resume" || step === "abort")) return action(req, res, url, name, { _tag: "rollout", step } as Omit<Action, "name">)
          return action(req, res, url, name, undefined)
        }
        if (req.method !== "GET" && req.method !== "HEAD") return Effect.sync(() => send(res, 405, "method not allowed\n", "text/plain; charset=utf-8", { Allow: "GET, POST" }))
        if (parts.length === 1 && first === "") return page(res, url, fleetData(link, fleetCache), pages.fleet)
        if (parts.length === 1 && first === "events") return events(req, res)
        if (first === "assets" && parts.length === 2) {
          const asset = assets.get(name ?? "")
          return asset === undefined ? notFound() : Effect.sync(() => send(res, 200, asset.body, asset.type, { "Cache-Control": "no-cache" }))
        }
        if (first === "c" && validName && sub === undefined) return page(res, url, configurationData(link, name), pages.configuration, name)
        if (first === "c" && validName && sub === "timeline" && step === undefined) return page(res, url, timelineData(link, name), pages.timeline, name)
        return notFound()
      })

    server.on("request", (req: http.IncomingMessage, res: Res) => {
      runFork(
        route(req, res).pipe(
          Effect.catchAllDefect((d) => Effect.sync(() => send(res, 500, `internal error: ${d instanceof Error ? d.message : String(d)}\n`, "text/plain; charset=utf-8")))
        )
      )
    })
    return { url: s.url, port }
  })
