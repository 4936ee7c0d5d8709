#!/usr/bin/env node
// deploy-from-docker: `docker save IMAGE | deploy-from-docker [-name N] [-layer c:v …]`.
// Reads the whole archive first (no network), then connects to the registry once, uploads only the
// layer versions it lacks and creates or updates configuration <image>. Scratch files live in one
// temp directory, removed on success, failure and interruption alike.
import { VERSION } from "../domain/Version.js"
import { Effect, Either, Option } from "effect"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { type LayerRef, validate } from "../domain/Commands.js"
import { type FlagSpec, flagUsage, parseFlags } from "../domain/Flags.js"
import { LocalIoError } from "../domain/DockerErrors.js"
import { UsageError } from "../domain/Errors.js"
import { componentNameProblem, configurationNameProblem } from "../domain/Names.js"
import { type OperatorEnv, operatorEnv } from "../operator/OperatorClient.js"
import { credentials, parseTarget, type Target } from "../ssh/ClientConnect.js"
import { configurationName, prepareImage, publish } from "./Import.js"
import { ImportTargetLive } from "./ImportTarget.js"

const flags: ReadonlyArray<FlagSpec> = [
  { name: "name", kind: "string", description: "configuration name (default: the image name, `:` and `/` made `.`)" },
  { name: "layer", kind: "list", description: "component:version appended after the image layers (repeatable)" },
  { name: "addr", kind: "string", description: "$DEPLOYCTL_ADDR, registry host address (host:port; replicas: host:port,host:port,… tried in order)" },
  { name: "fp", kind: "string", description: "$DEPLOYCTL_FINGERPRINT, sha256 host key fingerprint (SHA256:...)" },
  { name: "key", kind: "string", description: "ssh private key to use; if not set, ssh-agent is used" },
  { name: "version", kind: "bool", description: "print the version and exit" }
]

const usageText = `deploy-from-docker ${VERSION}
Usage: docker save IMAGE | deploy-from-docker [flags]

Turns each layer of the image into component <image>.l<N> (version: short layer digest), uploads
the versions the registry lacks, and creates or updates configuration <image>.

${flags.map((f) => flagUsage(f, f.kind === "list" ? "value" : f.kind === "bool" ? "" : "string")).join("")}`

const usage = (message: string) => new UsageError({ message })

interface Options {
  readonly name: string | undefined
  readonly extra: ReadonlyArray<LayerRef>
  readonly target: Target
  readonly key: string | undefined
}

const parseArgs = (argv: ReadonlyArray<string>, env: OperatorEnv): Either.Either<Options | "help" | "version", UsageError> =>
  Either.gen(function* () {
    const raw = yield* parseFlags(flags, argv)
    if (raw.help) return "help" as const
    if (raw.bools.has("version")) return "version" as const
    const name = raw.strings.get("name")
    if (name !== undefined) {
      const problem = configurationNameProblem(name) ?? componentNameProblem(`${name}.l1`)
      if (problem !== undefined) return yield* Either.left(usage(`-name: ${problem}`))
    }
    const extraSpecs = raw.lists.get("layer") ?? []
    let extra: ReadonlyArray<LayerRef> = []
    if (extraSpecs.length > 0) {
      // The same validation addconf applies, so a bad -layer fails before the archive is read.
      const cmd = yield* validate("addconf", { ...raw, strings: new Map([["name", "x"]]) })
      if (cmd._tag === "addconf") extra = cmd.layers
    }
    // Connection flags are checked before the (possibly long) read of the archive, as deployctl checks them.
    const target = yield* parseTarget(raw.strings.get("addr") ?? Option.getOrUndefined(env.addr), raw.strings.get("fp") ?? Option.getOrUndefined(env.fingerprint))
    if (process.stdin.isTTY) return yield* Either.left(usage("stdin is a terminal; pipe `docker save IMAGE` into deploy-from-docker"))
    return { name, extra, target, key: raw.strings.get("key") }
  })

const scratchDir = Effect.acquireRelease(
  Effect.tryPromise({
    try: () => fs.mkdtemp(path.join(os.tmpdir(), "deploy-from-docker-")),
    catch: (cause) => new LocalIoError({ message: `cannot create a temp directory: ${(cause as Error).message}`, cause })
  }),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

const program = (argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const env = yield* operatorEnv
    const opts = yield* parseArgs(argv, env)
    if (opts === "help" || opts === "version") {
      process.stdout.write(opts === "help" ? usageText : `deploy-from-docker ${VERSION}\n`)
      return
    }
    // Credentials up front (before the archive is read), so that a key problem is reported at once.
    const auth = yield* credentials(opts.key, Option.getOrUndefined(env.agentSocket))
    const dir = yield* scratchDir
    const image = yield* prepareImage(process.stdin, dir)
    const name = yield* configurationName(opts.name, image)
    const username = Option.getOrElse(env.user, () => "") || "deploy-from-docker"
    yield* publish(image, name, opts.extra).pipe(Effect.provide(ImportTargetLive({ ...opts.target, auth, username })))
  }).pipe(Effect.scoped)

let exitCode = 0
program(process.argv.slice(2)).pipe(
  Effect.catchAll((e) =>
    Effect.sync(() => {
      exitCode = e._tag === "UsageError" ? 2 : 1
      process.stderr.write(`deploy-from-docker: ${e.message}\n`)
    })
  ),
  Effect.catchAllDefect((d) =>
    Effect.sync(() => {
      exitCode = 1
      process.stderr.write(`deploy-from-docker: internal error: ${d instanceof Error ? d.message : String(d)}\n`)
    })
  ),
  // Exit explicitly (also after success): a stdin or socket left open must not keep the process alive.
  // Output is flushed: stdout/stderr writes to pipes, files and terminals are synchronous on Linux.
  (effect) =>
    NodeRuntime.runMain(effect, {
      disableErrorReporting: true,
      teardown: (exit) => process.exit(exit._tag === "Failure" ? 130 : exitCode)
    })
)
