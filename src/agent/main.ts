#!/usr/bin/env node
// deploy-agent: flags (Go style as the original: -name x, -name=x, --name x), wiring, exit codes.
// Usage errors exit 2; a failed -once cycle or a held lock exits 1; SIGTERM/SIGINT exit 0.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Duration, Effect, Either, Exit, Layer, Queue } from "effect"
import * as fs from "node:fs"
import { loop, once } from "./Agent.js"
import { AgentConfig, type AgentSettings } from "./AgentConfig.js"
import { type Startup, startup, usage } from "./Flags.js"
import { AgentLog, AgentLogStderr } from "./AgentLog.js"
import { CacheLive } from "./Cache.js"
import { acquireLock } from "./Lock.js"
import { RegistryClientLive } from "./RegistryClient.js"
import { ScriptRunnerLive } from "./ScriptRunner.js"
import { StateFileLive } from "./StateFile.js"
import { UnpackerLive } from "./Unpacker.js"

const servicesFor = (settings: AgentSettings) => {
  const base = Layer.merge(AgentConfig.layer(settings), AgentLogStderr(settings.verbose))
  return Layer.mergeAll(RegistryClientLive, CacheLive, UnpackerLive, ScriptRunnerLive, StateFileLive).pipe(Layer.provideMerge(base))
}

const program = (s: Extract<Startup, { _tag: "Run" }>): Effect.Effect<number> => {
  const { settings } = s
  return Effect.gen(function* () {
    const log = yield* AgentLog
    const locked = yield* acquireLock(settings.dir).pipe(
      Effect.as(true),
      Effect.catchAll((e) => Effect.as(log.error(e.message), false))
    )
    if (!locked) return 1
    yield* log.info(
      `deploy-agent tracking configuration ${settings.name} at ${s.addr} (dir ${settings.dir}, state ${settings.state}, poll ${Duration.format(settings.poll)}, ${settings.keyDescription ?? "key"})`
    )
    if (s.once) return (yield* once) ? 0 : 1
    // SIGHUP: poll now. A sliding queue of one remembers a signal that arrives mid-cycle.
    const wake = yield* Queue.sliding<void>(1)
    const onHup = () => {
      log.line("info", "SIGHUP: polling now")
      Queue.unsafeOffer(wake, undefined)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHup)),
      () => Effect.sync(() => process.removeListener("SIGHUP", onHup))
    )
    const pollMs = Duration.toMillis(settings.poll)
    const firstDelay = Duration.millis(Math.floor(Math.random() * Math.min(pollMs, 5000)))
    return yield* loop({ wake: Queue.take(wake), firstDelay, jitter: "5 seconds" })
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
  const run = s.right
  return Effect.sync(() => fs.mkdirSync(run.settings.dir, { recursive: true })).pipe(
    Effect.zipRight(program(run)),
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
