#!/usr/bin/env node
// deploy-agent: flags (Go style as the original: -name x, -name=x, --name x), wiring, exit codes.
// Usage errors exit 2; a failed -once cycle or a held lock exits 1; SIGTERM/SIGINT exit 0.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Duration, Effect, Either, Exit, Layer, Queue } from "effect"
import { loop, once } from "./Agent.js"
import { AgentConfig, type AgentSettings } from "./AgentConfig.js"
import { type Startup, startup, usage } from "./Flags.js"
import { AgentLog, AgentLogStderr } from "./AgentLog.js"
import { CacheLive } from "./Cache.js"
import { VERSION } from "../domain/Version.js"
import { acquireLock, acquireStateLock } from "./Lock.js"
import { MetricsFileLive } from "./MetricsFile.js"
import { RegistryClientLive } from "./RegistryClient.js"
import { RetryGate, RetryGateLive } from "./RetryGate.js"
import { ScriptRunnerLive } from "./ScriptRunner.js"
import { Reporter, ReporterLive } from "./Reporter.js"
import { AgentSession, AgentSessionLive } from "./Session.js"
import { StateFile, StateFileLive } from "./StateFile.js"
import { UnpackerLive } from "./Unpacker.js"

const servicesFor = (settings: AgentSettings) => {
  const base = Layer.merge(AgentConfig.layer(settings), AgentLogStderr(settings.verbose))
  // The watch session (Session.ts) holds the connection the cycle's SFTP uses; the Reporter talks on it.
  const session = Layer.mergeAll(ReporterLive, RegistryClientLive).pipe(Layer.provideMerge(Layer.merge(AgentSessionLive, StateFileLive)))
  // -metrics-file: its module loads the exporter by dynamic import, so only agents given the flag pay for it.
  const metrics = settings.metricsFile === undefined ? Layer.empty : MetricsFileLive(settings.metricsFile, settings.name).pipe(Layer.provide(StateFileLive))
  return Layer.mergeAll(session, metrics, CacheLive, UnpackerLive, ScriptRunnerLive, RetryGateLive).pipe(Layer.provideMerge(base))
}

const program = (s: Extract<Startup, { _tag: "Run" }>): Effect.Effect<number> => {
  const { settings } = s
  return Effect.gen(function* () {
    const log = yield* AgentLog
    const locked = yield* Effect.zipRight(acquireLock(settings.dir), acquireStateLock(settings.state)).pipe(
      Effect.as(true),
      Effect.catchAll((e) => Effect.as(log.error(e.message), false))
    )
    if (!locked) return 1
    // A state file of another configuration (two agents once shared one) is refused before anything runs.
    const state = yield* (yield* StateFile).read.pipe(Effect.either)
    if (Either.isLeft(state) && state.left.foreign) {
      yield* log.error(state.left.message)
      return 2
    }
    // One line when a signal stops the agent (runMain turns SIGTERM/SIGINT into interruption).
    let stopSignal = "signal"
    const onSignal = (sig: NodeJS.Signals) => void (stopSignal = sig)
    yield* Effect.acquireRelease(
      Effect.sync(() => (process.once("SIGTERM", onSignal), process.once("SIGINT", onSignal))),
      () => Effect.sync(() => (process.removeListener("SIGTERM", onSignal), process.removeListener("SIGINT", onSignal)))
    )
    yield* Effect.addFinalizer((exit) =>
      Exit.isInterrupted(exit) ? log.info(`deploy-agent stopped (${stopSignal}), configuration ${settings.name}`) : Effect.void
    )
    yield* log.info(
      `deploy-agent tracking configuration ${settings.name} at ${s.addr} (dir ${settings.dir}, state ${settings.state}, poll ${Duration.format(settings.poll)}, ${settings.keyDescription ?? "key"})`
    )
    if (s.once) return (yield* once) ? 0 : 1
    // SIGHUP: poll now, retrying a failed hash. A sliding queue of one remembers a signal that arrives mid-cycle.
    const wake = yield* Queue.sliding<void>(1)
    const gate = yield* RetryGate
    const onHup = () => {
      log.line("info", "SIGHUP: polling now")
      Effect.runSync(gate.request)
      Queue.unsafeOffer(wake, undefined)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHup)),
      () => Effect.sync(() => process.removeListener("SIGHUP", onHup))
    )
    // The watch session: a pushed change wakes the loop as SIGHUP does.
    const session = yield* AgentSession
    const reporter = yield* Reporter
    yield* Effect.forkScoped(session.run(() => Queue.unsafeOffer(wake, undefined), reporter.running))
    const pollMs = Duration.toMillis(settings.poll)
    const firstDelay = Duration.millis(Math.floor(Math.random() * Math.min(pollMs, Duration.toMillis(settings.jitter))))
    return yield* loop({ wake: Queue.take(wake), firstDelay, jitter: settings.jitter })
  }).pipe(
    Effect.scoped,
    Effect.provide(servicesFor(settings)),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.sync(() => {
            process.stderr.write(`${new Date().toISOString()} error ${Cause.pretty(cause).split("\n")[0]}\n`)
            return 1
          })
    )
  )
}

const main = (): Effect.Effect<number> => {
  const s = startup(process.argv.slice(2), process.cwd())
  if (Either.isLeft(s)) {
    return Effect.sync(() => {
      process.stderr.write(`deploy-agent: ${s.left}\n`)
      return 2
    })
  }
  if (s.right._tag === "Help") return Effect.sync(() => (process.stdout.write(usage()), 0))
  if (s.right._tag === "Version") return Effect.sync(() => (process.stdout.write(`deploy-agent ${VERSION}\n`), 0))
  // Flags.startup created -dir and checked it is writable.
  return program(s.right).pipe(
    Effect.catchAllDefect((d) =>
      Effect.sync(() => {
        process.stderr.write(`deploy-agent: ${d instanceof Error ? d.message : String(d)}\n`)
        return 1
      })
    )
  )
}

NodeRuntime.runMain(main(), {
  disableErrorReporting: true,
  teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) && typeof exit.value === "number" ? exit.value : Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause) ? 0 : 1)
})
