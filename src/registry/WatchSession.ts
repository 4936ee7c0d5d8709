// The one exec an agent key may run: `watch -name CONF -host H -version V` (docs/design.md "Agent
// sessions"). The registry streams one JSON line per event on stdout: the current state at once, then
// every committed change (ChangeFeed, through WatchFanout.ts: one read per configuration and event for
// all its sessions), deletion too, and a ping every interval; the agent sends report
// and ping lines on stdin. Either side that hears nothing for two intervals takes the peer for dead.
// What an agent can make us hold is bounded: line length, lines and reports per second, and the
// output waiting for an agent that stopped reading.
import { Deferred, Effect, Either, Exit, Option, Queue } from "effect"
import type { ServerChannel } from "ssh2"
import { quote } from "../domain/LogText.js"
import { decodeAgentLine, MAX_LINE_BYTES, parseWatch, type WatchEvent } from "../domain/Report.js"
import type { ConfigScope } from "../domain/ConfigScope.js"
import { split } from "../domain/ShellWords.js"
import { rfc3339Nano } from "../domain/Time.js"
import { lineReader } from "../ssh/LineReader.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import type { StorageError } from "../domain/Errors.js"
import { type AgentLink, HostStatus } from "./HostStatus.js"
import { Rollouts, type Serving } from "./Rollouts.js"
import type { WatchFanout, WatchUpdate } from "./WatchFanout.js"

export interface WatchOptions {
  /** false: refuse the exec, as the original Go registry does (agents then poll). */
  readonly enabled: boolean
  /** A ping line this often; no line from the agent for two of them ends the session. */
  readonly pingMs: number
}

// 15 s: a dead peer is noticed within 30 s, and 5,000 idle watchers cost the registry 667 lines a second.
export const defaultWatchOptions: WatchOptions = { enabled: true, pingMs: 15_000 }

const PING = '{"type":"ping"}\n'


/** Output waiting for an agent that does not read: beyond this the session is closed (it reconnects). */
const MAX_BUFFERED = 256 * 1024
/** Token buckets: lines of any kind, and reports (stored rows). */
const LINES_BURST = 100
const LINES_PER_SECOND = 20
const REPORTS_BURST = 20
const REPORTS_PER_SECOND = 1

const bucket = (burst: number, perSecond: number) => {
  let tokens = burst
  let at = Date.now()
  return () => {
    const now = Date.now()
    tokens = Math.min(burst, tokens + ((now - at) / 1000) * perSecond)
    at = now
    if (tokens < 1) return false
    tokens -= 1
    return true
  }
}

const fail = (channel: ServerChannel, message: string) =>
  Effect.sync(() => {
    if (channel.writable) channel.write(`${message}\n`)
    channel.exit(1)
    channel.end()
  })

/** Agent keys may open an exec only for `watch`; anything else is refused at the channel request, as before. */
export const isWatchCommand = (command: string): boolean => {
  const words = split(command)
  return Either.isRight(words) && words.right[0] === "watch"
}

/**
 * Serves one `watch` exec on `channel` for the agent on `link` (one watch per connection). A key scoped
 * by `configurations=` (AgentScope.ts) that names another configuration is answered as for one that does
 * not exist, and nothing it says is recorded: names must not leak, nor status be written for them.
 */
export const serveWatch = (channel: ServerChannel, command: string, link: AgentLink, fanout: WatchFanout, options: WatchOptions, scope?: ConfigScope) =>
  Effect.scoped(
    Effect.gen(function* () {
      const words = split(command)
      const parsed = Either.isLeft(words) ? Either.left(words.left.message) : parseWatch(words.right)
      if (Either.isLeft(parsed)) return yield* fail(channel, parsed.left)
      const req = parsed.right
      if (link.host !== undefined) return yield* fail(channel, "one watch per connection")
      const hosts = yield* HostStatus
      const rollouts = yield* Rollouts

      // Subscribed before the current state is read: a change committed in between is not missed.
      const hidden = scope !== undefined && !scope.allows(req.name)
      const updates = hidden ? undefined : yield* fanout.subscribe(req.name)
      link.host = req.host
      link.configuration = req.name
      link.version = req.version
      const who = `agent ${quote(req.host)} (${link.fingerprint} from ${link.address})`
      if (!hidden) yield* hosts.attach({ fingerprint: link.fingerprint, address: link.address, host: req.host, configuration: req.name, version: req.version })

      const ended = yield* Deferred.make<string>()
      const end = (why: string) => Deferred.unsafeDone(ended, Exit.succeed(why))
      const send = (e: WatchEvent) => {
        if (!channel.writable) return
        channel.write(`${JSON.stringify(e)}\n`)
        if (channel.writableLength > MAX_BUFFERED) end("it does not read its events")
      }

      // What this host is served: during a rollout it depends on its wave (Rollouts). A state already
      // sent is not sent again (a rollout step that does not concern this host).
      let last: string | undefined
      const show = (doc: Option.Option<ConfigurationDocument>) => {
        const key = Option.isSome(doc) ? `${doc.value.Hash}` : "deleted"
        if (key === last) return
        last = key
        send(
          Option.isSome(doc)
            ? { type: "state", name: req.name, hash: doc.value.Hash, mtime: rfc3339Nano(doc.value.Mtime) }
            : { type: "deleted", name: req.name }
        )
      }
      // A read that failed (the database away) is not a deletion: nothing is sent; the next event, or the
      // resync after an outage, reads again.
      const showServing = (read: Effect.Effect<Serving, StorageError>) =>
        Effect.matchEffect(read, {
          onFailure: (e) => Effect.logWarning(`watch of ${who}: reading what it is served failed (${e.reason}); it is told at the next change`),
          onSuccess: (serving) => Effect.sync(() => show(serving(req.host)))
        })
      if (hidden) show(Option.none())
      else {
        // The first read failing, the agent is told nothing at all: closed, it reconnects and reads again.
        const first = yield* Effect.either(rollouts.document(req.name, req.host))
        if (Either.isRight(first)) show(first.right)
        else {
          yield* Effect.logWarning(`watch of ${who}: reading its document failed (${first.left.reason})`)
          end("its document could not be read")
        }
      }
      const onUpdate = ({ event: e, serving }: WatchUpdate) =>
        // Events may have been missed (a renewed LISTEN, PgChangeFeed.ts): what this host is served, sent again.
        e._tag === "Resync" ? Effect.suspend(() => {
            last = undefined
            return serving === undefined ? Effect.void : showServing(serving)
          })
        : e._tag === "Deleted" ? Effect.sync(() => show(Option.none()))
        // A new signature of what this host is served: sent again, so an agent that refused it as unsigned looks again.
        : e._tag === "Signed" ? Effect.suspend(() => {
            if (last !== e.hash || serving === undefined) return Effect.void
            last = undefined
            return showServing(serving)
          })
        // Without a rollout the event is what the host gets (no read at all).
        : serving === undefined ? Effect.sync(() => {
            if (e._tag !== "State") return
            last = e.hash
            send({ type: "state", name: e.name, hash: e.hash, mtime: rfc3339Nano(e.time) })
          })
        : showServing(serving)
      if (updates !== undefined) yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(updates), onUpdate)))

      // Lines from the agent. A report goes to HostStatus's queue (synchronous: it only enqueues).
      let heard = Date.now()
      const lines = bucket(LINES_BURST, LINES_PER_SECOND)
      const reports = bucket(REPORTS_BURST, REPORTS_PER_SECOND)
      const onLine = (line: string) => {
        if (!lines()) return end("it sends too many lines")
        if (line === '{"type":"ping"}') return // the common case, without the schema
        const decoded = decodeAgentLine(line)
        if (Either.isLeft(decoded)) return send({ type: "refused", message: "invalid line: expected a ping or a report (docs/design.md)" })
        const l = decoded.right
        if (l.type === "ping") return
        if (l.report.host !== req.host || l.report.configuration !== req.name) {
          return send({ type: "refused", message: "a report must name the host and configuration of its watch" })
        }
        if (!reports()) return send({ type: "refused", message: "too many reports; this one was dropped" })
        if (!hidden) {
          Effect.runSync(hosts.report(l.report, link))
          Effect.runSync(rollouts.wake)
        }
      }
      channel.on(
        "data",
        lineReader(MAX_LINE_BYTES, (line) => {
          heard = Date.now()
          if (line.trim() !== "") onLine(line)
        }, () => end("it sent a line longer than the limit"))
      )
      channel.once("end", () => end("closed"))
      channel.once("close", () => end("closed"))
      const timer = setInterval(() => {
        if (Date.now() - heard > 2 * options.pingMs) end(`no line from it for ${Math.round((2 * options.pingMs) / 1000)} s`)
        else if (channel.writable) channel.write(PING)
      }, options.pingMs)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          clearInterval(timer)
          try {
            if (channel.writable) {
              channel.exit(0)
              channel.end()
            }
          } catch {
            // gone already
          }
        })
      )
      yield* Effect.logInfo(`${who} watches configuration ${quote(req.name)}`)
      const why = yield* Deferred.await(ended)
      yield* Effect.logInfo(why === "closed" ? `${who} stopped watching ${quote(req.name)}` : `closing the watch of ${who}: ${why}`)
    })
  )
