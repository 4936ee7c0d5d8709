#!/usr/bin/env node
// deploy-registry: flags, wiring, run. The only place where layers are assembled.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Context, Effect, FiberRef, HashSet, Layer, Logger, LogLevel } from "effect"
import { promises as fs, constants as fsConstants } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { StorageError } from "../domain/Errors.js"
import type { ImportError } from "../domain/ImportError.js"
import { escapeUnprintable } from "../domain/LogText.js"
import { StartupError } from "../domain/StartupError.js"
import { VERSION } from "../domain/Version.js"
import { startedUp } from "../launch/StartedUp.js"
import type { SshError } from "../ssh/SshError.js"
import { HostKey, HostKeyLive } from "../ssh/HostKey.js"
import { databaseKind, importGoRegistry, renderSummary } from "./import/ImportDir.js"
import { AuthLive } from "./Auth.js"
import { BlobStoreLive } from "./BlobStore.js"
import { ChangeFeedLive, ChangeFeedStorage } from "./ChangeFeed.js"
import { LeadershipLive } from "./Leadership.js"
import { RolloutsLive } from "./Rollouts.js"
import { CommandInterpreterLive } from "./CommandInterpreter.js"
import { HostStatusLive } from "./HostStatus.js"
import { HostEventsLive } from "./HostEvents.js"
import { OperatorEventsLive } from "./OperatorEvents.js"
import { TimelineLive } from "./Timeline.js"
import { LayerVerdictsLive } from "./LayerVerdicts.js"
import { devHints, display, prepareDevKeys } from "./DevMode.js"
import { parseArgs, type RegistryFlags } from "./Flags.js"
import { JanitorLive } from "./Janitor.js"
import { PgBlobStoreLive } from "./PgBlobStore.js"
import { RegistryConfig } from "./RegistryConfig.js"
import { ReportMetricsHostStatus } from "./ReportMetrics.js"
import { SqlLive } from "./Sql.js"
import { SshServer, SshServerLive } from "./SshServer.js"
import { SignaturesLive } from "./Signatures.js"
import { StorageLive, StorageReadOnly } from "./Storage.js"
import { UploadsLive } from "./Uploads.js"
import { renderReport, verify } from "./Verify.js"

// One line per event on stderr, as the agent's: `<RFC 3339 UTC time with ms> <level> <message>`,
// level info, warn, error or debug ("… info listening on …").
const levelName = (l: LogLevel.LogLevel) =>
  LogLevel.greaterThanEqual(l, LogLevel.Error) ? "error" : l === LogLevel.Warning ? "warn" : LogLevel.greaterThanEqual(l, LogLevel.Info) ? "info" : "debug"
const PlainLogger = Logger.make(({ logLevel, message, cause, date }) => {
  const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
  const prefix = `${date.toISOString()} ${levelName(logLevel)} `
  const why = Cause.isEmpty(cause) ? "" : `: ${Cause.squash(cause) instanceof Error ? (Cause.squash(cause) as Error).message : String(Cause.squash(cause))}`
  // Untrusted strings are quoted where they are logged; this keeps any line we missed one line.
  process.stderr.write(`${prefix}${escapeUnprintable(`${text}${why}`)}\n`)
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

/** A Go registry's bolt state.db would fail in SQLite with "file is not a database": say what to do instead. */
const refuseGoData = (dir: string) =>
  Effect.flatMap(Effect.promise(() => databaseKind(`${dir}/state.db`)), (kind) =>
    kind === "bolt"
      ? new StartupError({
          message: `${dir}: this looks like a Go deploy-registry data directory; run deploy-registry import -from ${dir} -dir NEW_DIR`
        })
      : kind === "other"
        ? new StartupError({ message: `${dir}/state.db is not a registry database (neither SQLite nor a Go registry's bolt file)` })
        : Effect.void
  )

const serve = (flags: RegistryFlags) =>
  Effect.gen(function* () {
    yield* refuseGoData(flags.dir)
    yield* prepareDir(flags.dir)
    const dev = flags.dev ? yield* prepareDevKeys(flags) : undefined
    if (dev) {
      yield* Effect.logInfo(`dev mode: data in ${display(flags.dir)}`)
      for (const line of dev.lines) yield* Effect.logInfo(line)
    }

    const config = RegistryConfig.make(flags.dir, { maxVersions: flags.maxver, db: flags.db, cacheMax: flags.cacheMax })
    if (flags.db !== undefined) yield* Effect.logInfo(`metadata and blobs in PostgreSQL at ${describeDb(flags.db)}`)
    // The feed crosses replicas on PostgreSQL (LISTEN/NOTIFY); its module (and pg) load only with -db.
    const Feed = flags.db === undefined
      ? ChangeFeedLive
      : Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./PgChangeFeed.js")), (m) => m.ChangeFeedFor()))
    // Storage publishes every committed change to the feed (watch sessions); HostStatus after the migrations.
    const Metadata = RolloutsLive({ tickMs: flags.rolloutTickMs }).pipe(
      Layer.provideMerge(Layer.mergeAll(ReportMetricsHostStatus.pipe(Layer.provide(HostStatusLive)), SignaturesLive))
    ).pipe(
      // Replicas on PostgreSQL: events cross them by LISTEN/NOTIFY, and one leader drives rollouts and the janitor.
      Layer.provideMerge(Layer.merge(ChangeFeedStorage.pipe(Layer.provide(StorageLive), Layer.provideMerge(Feed)), LeadershipLive())),
      Layer.provideMerge(SqlLive(flags.dir, { db: flags.db })),
      Layer.provideMerge(HostEventsLive) // HostStatus publishes host changes when it is there
    )
    // With -db the blobs live in PostgreSQL too (PgBlobStore, cached in <dir>/cache); else in <dir>/files.
    const Blobs = flags.db !== undefined ? PgBlobStoreLive : BlobStoreLive
    const Core = CommandInterpreterLive.pipe(
      // TimelineLive and OperatorEventsLive follow the feeds: the 24 h timeline and the operators' `events` stream.
      Layer.provideMerge(Layer.mergeAll(TimelineLive, OperatorEventsLive, Blobs, UploadsLive, LayerVerdictsLive)),
      Layer.provideMerge(Metadata),
      Layer.provideMerge(config)
    )
    const Edge = Layer.mergeAll(AuthLive({ operatorKeys: flags.opauth, serviceKeys: flags.srvauth }), HostKeyLive(flags.dir, flags.hostkey))
    // The exporter's modules load only when asked for (start-up without -metrics does not pay for them).
    const metrics = flags.metrics
    const Metrics = metrics === undefined
      ? Layer.empty
      : Layer.unwrapEffect(Effect.map(Effect.promise(() => import("./MetricsEndpoint.js")), (m) => m.MetricsEndpointLive(metrics)))
    const Registry = Layer.mergeAll(
      SshServerLive({ host: flags.host, port: flags.port, deadline: flags.deadline, limits: flags.limits, watch: flags.watch }),
      JanitorLive(),
      Metrics,
      Edge
    ).pipe(Layer.provide(Edge), Layer.provide(Core))

    yield* Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(Registry)
        // Listening: the launcher may save the code cache now (a registry is often stopped by SIGKILL).
        startedUp()
        if (dev) {
          const { address } = Context.get(ctx, SshServer)
          const hostKey = Context.get(ctx, HostKey)
          process.stdout.write(devHints({ host: address.host, port: address.port, fingerprint: hostKey.fingerprint, keys: dev.keys }))
        }
        return yield* Effect.never
      })
    )
  })

/** host:port/database of a PostgreSQL URL, for logs (never the user or password). */
const describeDb = (url: string) => {
  try {
    const u = new URL(url)
    return `${u.host}${u.pathname}`
  } catch {
    return "(unparsable URL)"
  }
}

/** verify -db: the database's metadata and blobs; a throwaway cache (the registry's own -dir stays untouched). */
const verifyDb = (db: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const cacheDir = yield* Effect.acquireRelease(
        Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "registry-verify-"))),
        (d) => Effect.promise(() => fs.rm(d, { recursive: true, force: true }))
      )
      const report = yield* verify.pipe(
        Effect.map(renderReport),
        Effect.provide(
          Layer.mergeAll(StorageReadOnly, PgBlobStoreLive).pipe(
            Layer.provide(SqlLive(cacheDir, { readonly: true, db })),
            Layer.provide(RegistryConfig.make(cacheDir, { db }))
          )
        )
      )
      process.stdout.write(report.output)
      if (report.exitCode !== 0) process.exitCode = report.exitCode
    })
  )

const verifyDir = (dir: string) =>
  Effect.gen(function* () {
    const found = yield* Effect.promise(() => fs.access(`${dir}/state.db`).then(() => true, () => false))
    if (!found) return yield* new StartupError({ message: `no registry in ${dir} (state.db not found)` })
    yield* refuseGoData(dir)
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

const argv = process.argv.slice(2)
const parsed = argv.length === 1 && /^--?version$/.test(argv[0]!) ? ({ _tag: "Version" } as const) : parseArgs(argv, process.env)
switch (parsed._tag) {
  case "Version":
    process.stdout.write(`deploy-registry ${VERSION}\n`)
    break
  case "Help":
    process.stdout.write(`deploy-registry ${VERSION} (deploy-registry --version prints just the version)\n${parsed.text}`)
    break
  case "Usage":
    process.stderr.write(`deploy-registry: ${parsed.message} (see deploy-registry -h)\n`)
    process.exitCode = 2
    break
  case "Verify":
  case "Import":
  case "Serve": {
    const program: Effect.Effect<void, ImportError | StartupError | StorageError | SshError> =
      parsed._tag === "Verify"
        ? parsed.db !== undefined ? verifyDb(parsed.db) : verifyDir(parsed.dir)
        : parsed._tag === "Import"
          ? Effect.map(importGoRegistry(parsed.from, parsed.dir), (s) => void process.stdout.write(renderSummary(parsed.from, parsed.dir, s)))
          : serve(parsed.flags)
    program.pipe(
      Effect.tapErrorCause((cause) =>
        Effect.sync(() => {
          if (Cause.isInterruptedOnly(cause)) return
          const failure = Cause.failureOption(cause)
          // A defect is still one line: its message, without the stack.
          const squashed = Cause.squash(cause)
          const text =
            failure._tag === "Some"
              ? describeFailure(failure.value)
              : `internal error: ${(squashed instanceof Error ? squashed.message : String(squashed)).split("\n")[0]}`
          process.stderr.write(`deploy-registry: ${text}\n`)
        })
      ),
      Effect.provide(Logging),
      NodeRuntime.runMain({ disableErrorReporting: true })
    )
  }
}
