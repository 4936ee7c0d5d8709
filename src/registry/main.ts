#!/usr/bin/env node
// deploy-registry: flags, wiring, run. The only place where layers are assembled.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Context, Effect, FiberRef, HashSet, Layer, Logger, LogLevel } from "effect"
import { promises as fs, constants as fsConstants } from "node:fs"
import { StartupError } from "../domain/StartupError.js"
import { HostKey, HostKeyLive } from "../ssh/HostKey.js"
import { AuthLive } from "./Auth.js"
import { BlobStoreLive } from "./BlobStore.js"
import { ConsoleLive } from "./Console.js"
import { devHints, display, prepareDevKeys } from "./DevMode.js"
import { parseArgs, type RegistryFlags } from "./Flags.js"
import { JanitorLive } from "./Janitor.js"
import { RegistryConfig } from "./RegistryConfig.js"
import { SqlLive } from "./Sql.js"
import { SshServer, SshServerLive } from "./SshServer.js"
import { StorageLive, StorageReadOnly } from "./Storage.js"
import { UploadsLive } from "./Uploads.js"
import { renderReport, verify } from "./Verify.js"

// Plain lines on stderr (journald adds time stamps): "listening on …", "warning: …", "error: …".
const PlainLogger = Logger.make(({ logLevel, message, cause }) => {
  const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
  const prefix = LogLevel.greaterThanEqual(logLevel, LogLevel.Error) ? "error: " : logLevel === LogLevel.Warning ? "warning: " : ""
  const why = Cause.isEmpty(cause) ? "" : `: ${Cause.squash(cause) instanceof Error ? (Cause.squash(cause) as Error).message : String(Cause.squash(cause))}`
  process.stderr.write(`${prefix}${text}${why}\n`)
})
// Replaces every logger, including the pretty one runMain installs.
const Logging = Layer.scopedDiscard(Effect.locallyScopedWith(FiberRef.currentLoggers, () => HashSet.make(PlainLogger)))

/** One line for an expected failure; internal errors keep their cause's message but no stack. */
const describeFailure = (e: unknown): string => {
  const err = e as { _tag?: string; message?: string; reason?: string; cause?: unknown }
  if (err._tag === "StorageError") {
    const c = err.cause as { message?: string } | undefined
    return `${err.reason}${c?.message ? `: ${c.message}` : ""}`
  }
  return err.message ?? String(e)
}

/** Creates -dir (0700) when missing (fault 11) and checks that we may use it. */
const prepareDir = (dir: string) =>
  Effect.tryPromise({
    try: async () => {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 })
      await fs.access(dir, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK)
    },
    catch: (e) => new StartupError({ message: `cannot use -dir ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` })
  })

const serve = (flags: RegistryFlags) =>
  Effect.gen(function* () {
    yield* prepareDir(flags.dir)
    const dev = flags.dev ? yield* prepareDevKeys(flags) : undefined
    if (dev) {
      yield* Effect.logInfo(`dev mode: data in ${display(flags.dir)}`)
      for (const line of dev.lines) yield* Effect.logInfo(line)
    }

    const config = RegistryConfig.make(flags.dir, { maxVersions: flags.maxver })
    const Core = ConsoleLive.pipe(
      Layer.provideMerge(Layer.mergeAll(StorageLive.pipe(Layer.provide(SqlLive(flags.dir))), BlobStoreLive, UploadsLive)),
      Layer.provideMerge(config)
    )
    const Edge = Layer.mergeAll(AuthLive({ operatorKeys: flags.opauth, serviceKeys: flags.srvauth }), HostKeyLive(flags.dir))
    const Registry = Layer.mergeAll(
      SshServerLive({ host: flags.host, port: flags.port, deadline: flags.deadline, limits: flags.limits }),
      JanitorLive(),
      Edge
    ).pipe(Layer.provide(Edge), Layer.provide(Core))

    yield* Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(Registry)
        if (dev) {
          const { address } = Context.get(ctx, SshServer)
          const hostKey = Context.get(ctx, HostKey)
          process.stdout.write(devHints({ host: address.host, port: address.port, fingerprint: hostKey.fingerprint, keys: dev.keys }))
        }
        return yield* Effect.never
      })
    )
  })

const verifyDir = (dir: string) =>
  Effect.gen(function* () {
    const found = yield* Effect.promise(() => fs.access(`${dir}/state.db`).then(() => true, () => false))
    if (!found) return yield* new StartupError({ message: `no registry in ${dir} (state.db not found)` })
    const report = yield* verify.pipe(
      Effect.map(renderReport),
      Effect.provide(
        Layer.mergeAll(StorageReadOnly, BlobStoreLive).pipe(
          Layer.provide(SqlLive(dir, { readonly: true })),
          Layer.provide(RegistryConfig.make(dir))
        )
      )
    )
    process.stdout.write(report.output)
    if (report.exitCode !== 0) process.exitCode = report.exitCode
  })

const parsed = parseArgs(process.argv.slice(2))
switch (parsed._tag) {
  case "Help":
    process.stdout.write(parsed.text)
    break
  case "Usage":
    process.stderr.write(`deploy-registry: ${parsed.message} (see deploy-registry -h)\n`)
    process.exitCode = 2
    break
  case "Verify":
  case "Serve": {
    const program = parsed._tag === "Verify" ? verifyDir(parsed.dir) : serve(parsed.flags)
    program.pipe(
      Effect.tapErrorCause((cause) =>
        Effect.sync(() => {
          if (Cause.isInterruptedOnly(cause)) return
          const failure = Cause.failureOption(cause)
          const text = failure._tag === "Some" ? describeFailure(failure.value) : Cause.pretty(cause)
          process.stderr.write(`deploy-registry: ${text}\n`)
        })
      ),
      Effect.provide(Logging),
      NodeRuntime.runMain({ disableErrorReporting: true })
    )
  }
}
