// The agent's session with the registry (docs/design.md "Agent sessions"): one SSH connection held
// open with a `watch` exec on it. State events wake the cycle at once (the same path as SIGHUP);
// reports go back on the channel's stdin; the cycle's SFTP reads use the same connection. Polling goes
// on underneath, so a registry that refuses the exec (the original Go one) or a lost session only
// costs latency. Keepalive: a ping line every -ping; two silent intervals and the connection is
// dropped. A lost session reconnects after a random delay (up to -reconnect, then backing off), so a
// fleet does not reconnect all at once after a registry restart. With several -addr replicas the agent
// starts at a random one (a fleet spreads over them), stays with the one that answered, and moves to the
// next when its session is lost (its replica died); a connection that fails tries the next at once.
import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Random, type Scope } from "effect"
import type { Client, ClientChannel } from "ssh2"
import { RegistryError } from "../domain/AgentErrors.js"
import { decodeWatchEvent, encodeAgentLine, MAX_LINE_BYTES, type Report } from "../domain/Report.js"
import { join } from "../domain/ShellWords.js"
import { VERSION } from "../domain/Version.js"
import { type Address, connectFirst } from "../ssh/ClientConnect.js"
import { connect } from "../ssh/Connection.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { lineReader } from "../ssh/LineReader.js"
import { AgentConfig, type AgentSettings } from "./AgentConfig.js"
import { watchConnected } from "./AgentMetrics.js"
import { AgentLog } from "./AgentLog.js"

export class AgentSession extends Context.Tag("agent/AgentSession")<
  AgentSession,
  {
    /** A new connection (a poll without a session), from the address the session last used. */
    readonly connect: Effect.Effect<Client, RegistryError, Scope.Scope>
    /** The connection of the open watch session, for the cycle's SFTP; none while there is none. */
    readonly held: Effect.Effect<Option.Option<Client>>
    /** Sends now when the session is up; else the last one waits and is sent when it comes up. */
    readonly report: (r: Report) => Effect.Effect<void>
    /** Runs the session until interrupted; `wake` is called when the configuration moved away from `running()`. */
    readonly run: (wake: () => void, running: () => string | undefined) => Effect.Effect<never>
  }
>() {}

/** Every -addr address, in order. */
export const addressesOf = (cfg: AgentSettings): ReadonlyArray<Address> => cfg.addresses ?? [{ host: cfg.host, port: cfg.port }]

/**
 * Connects as `deploy-agent` with the pinned host key, from the address at `start` on (the next when one
 * cannot be reached: ClientConnect.connectFirst); with the index of the address that answered.
 */
export const connectAgentFrom = (start: number) =>
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    return yield* connectFirst(addressesOf(cfg), start, (a) =>
      connect({
        host: a.host,
        port: a.port,
        username: "deploy-agent",
        privateKey: cfg.privateKey,
        ...(cfg.certificate !== undefined ? { certificate: cfg.certificate } : {}),
        refused: `the registry refused ${cfg.keyDescription ?? "the key"}: add its public key to the registry's service keys file (-srvauth); deploy-agent logs in only with those`,
        verifyHostKey: (key) => fingerprint(key) === cfg.fingerprint,
        hostKeyRefused: (seen) => `registry ${a.host}:${a.port} presented host key ${seen}, not the pinned ${cfg.fingerprint}`
      })
    ).pipe(Effect.mapError((e) => new RegistryError({ message: e.message })))
  })

/** Opens the watch exec; fails with the registry's refusal (no exec, or its one-line error). */
const openWatch = (client: Client, command: string) =>
  Effect.async<ClientChannel, RegistryError>((resume) => {
    client.exec(command, (err, ch) => {
      if (err) return resume(Effect.fail(new RegistryError({ message: `the registry refused the watch session (${err.message})` })))
      resume(Effect.succeed(ch))
    })
  })

/** How a session ended: the registry refused watch (poll only, try again much later) or it was lost. */
type Ended = { readonly _tag: "Refused"; readonly message: string } | { readonly _tag: "Lost"; readonly message: string; readonly wasUp: boolean }

export const make = Effect.gen(function* () {
  const cfg = yield* AgentConfig
  const log = yield* AgentLog
  const pingMs = Duration.toMillis(cfg.ping)
  const command = join(["watch", "-name", cfg.name, "-host", cfg.hostName, "-version", VERSION])
  const addressCount = addressesOf(cfg).length
  // Where the next connection starts: a random replica at first, then the one that last answered.
  let preferred = addressCount > 1 ? yield* Random.nextIntBetween(0, addressCount) : 0
  const connectPreferred = Effect.suspend(() => connectAgentFrom(preferred)).pipe(
    Effect.provideService(AgentConfig, cfg),
    Effect.map(([c, index]) => {
      preferred = index
      return c
    })
  )
  let client: Client | undefined
  let channel: ClientChannel | undefined
  let pending: Report | undefined

  const write = (line: string) => {
    if (channel !== undefined && channel.writable) channel.write(`${line}\n`)
  }

  const report = (r: Report) =>
    Effect.sync(() => {
      pending = r
      if (channel !== undefined && channel.writable) write(encodeAgentLine({ type: "report", report: r }))
    })

  /** One session, from connect to its end. */
  const session = (wake: () => void, running: () => string | undefined): Effect.Effect<Ended, never, Scope.Scope> =>
    Effect.gen(function* () {
      const conn = yield* Effect.either(connectPreferred)
      if (conn._tag === "Left") return { _tag: "Lost", message: conn.left.message, wasUp: false } as const
      const c = conn.right
      const opened = yield* Effect.either(openWatch(c, command))
      if (opened._tag === "Left") return { _tag: "Refused", message: opened.left.message } as const
      const ch = opened.right
      const ended = yield* Deferred.make<Ended>()
      const end = (e: Ended) => Deferred.unsafeDone(ended, Exit.succeed(e))
      let heard = Date.now()
      let first = true
      let errorText = ""
      const onLine = (line: string) => {
        if (line === '{"type":"ping"}') return
        const ev = decodeWatchEvent(line)
        if (ev._tag === "Left") {
          // Not an event: the registry's one-line refusal of the command (then exit status 1).
          errorText = line.slice(0, 300)
          return
        }
        const e = ev.right
        if (e.type === "state") {
          if (first) log.line("info", `watching configuration ${cfg.name} on the registry (now ${e.hash})`)
          first = false
          if (e.hash !== running()) {
            log.line("info", `registry: configuration ${cfg.name} is now ${e.hash}`)
            wake()
          }
        } else if (e.type === "deleted") {
          first = false
          log.line("warn", `registry: configuration ${cfg.name} does not exist (deleted)`)
        } else if (e.type === "refused") {
          log.line("warn", `registry refused a report: ${e.message}`)
        }
      }
      ch.on(
        "data",
        lineReader(MAX_LINE_BYTES, (line) => {
          heard = Date.now()
          onLine(line)
        }, () => end({ _tag: "Lost", message: "the registry sent a line longer than the limit", wasUp: !first }))
      )
      ch.stderr.on("data", () => undefined)
      ch.once("close", () =>
        end(first && errorText !== "" ? { _tag: "Refused", message: errorText } : { _tag: "Lost", message: "the registry closed the watch session", wasUp: !first })
      )
      client = c
      channel = ch
      watchConnected.unsafeUpdate(1, [])
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          client = undefined
          channel = undefined
          watchConnected.unsafeUpdate(0, [])
        })
      )
      // Whatever was reported while there was no session (or before a restart of the registry) goes first.
      if (pending !== undefined) write(encodeAgentLine({ type: "report", report: pending }))
      const timer = setInterval(() => {
        if (Date.now() - heard > 2 * pingMs) {
          end({ _tag: "Lost", message: `no line from the registry for ${Math.round((2 * pingMs) / 1000)} s`, wasUp: !first })
        } else write('{"type":"ping"}')
      }, pingMs)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
      return yield* Deferred.await(ended)
    })

  const run = (wake: () => void, running: () => string | undefined): Effect.Effect<never> =>
    Effect.gen(function* () {
      const spread = Duration.toMillis(cfg.reconnect)
      let failures = 0
      for (;;) {
        const ended = yield* Effect.scoped(session(wake, running))
        let delay: number
        if (ended._tag === "Refused") {
          // The original registry, or ours with watch off: polling only; ask again now and then.
          yield* log.info(`${ended.message}; polling every ${Duration.format(cfg.poll)} instead`)
          delay = Math.max(Duration.toMillis(cfg.poll), 5 * 60_000)
          failures = 0
        } else {
          if (ended.wasUp) {
            yield* log.warn(`watch session lost: ${ended.message}; reconnecting`)
            failures = 0
            // Its replica may have died: start with the next one (connectFirst still tries them all).
            preferred = (preferred + 1) % addressCount
          } else if (failures === 0) yield* log.warn(`cannot open a watch session: ${ended.message}; retrying`)
          // Just lost: uniform in [0, -reconnect] (the fleet spreads out). Each failed connect after that:
          // uniform in [cap/2, cap], the cap 5 s doubling up to 5 minutes (a registry restarting is back soon).
          if (ended.wasUp) delay = Math.round(yield* Random.nextRange(0, spread))
          else {
            const cap = Math.min(5000 * 2 ** failures, 5 * 60_000)
            failures++
            delay = Math.round(yield* Random.nextRange(cap / 2, cap))
          }
        }
        yield* Effect.sleep(Duration.millis(delay))
      }
    })

  return AgentSession.of({ connect: connectPreferred, held: Effect.sync(() => Option.fromNullable(client)), report, run })
})

export const AgentSessionLive = Layer.effect(AgentSession, make)
