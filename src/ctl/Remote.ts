// deployctl's side of the wire: connect to the registry (host key pinned by -fp, else
// ~/.ssh/known_hosts), send one validated catalogue command through the operator client
// (src/operator/OperatorClient.ts), and pass the registry's output and exit status through
// unchanged. `addver -file` uploads first (Upload.ts) on the same connection. The modules of the web
// view, signing and the upload (with its archive check) load when their command runs, so that the
// other commands start without them.
import { Context, Data, Effect, Layer, Option } from "effect"
import type { Command } from "../domain/Commands.js"
import { validate } from "../domain/Commands.js"
import type { UsageError } from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256 } from "../domain/Names.js"
import { join } from "../domain/ShellWords.js"
import { fromClient, type OperatorClient, operatorEnv, systemUser } from "../operator/OperatorClient.js"
import { connectOperator } from "../ssh/ClientConnect.js"
import type { ExecResult } from "../ssh/Exec.js"
import type { SshError } from "../ssh/SshError.js"
import type { Terminal } from "./Progress.js"
import type { SigningKey } from "../ssh/Signer.js"
import type { SignArgs } from "./Sign.js"
import { waitForStatus } from "./StatusWait.js"
import type { FileError, InvalidArchive } from "./Upload.js"
import type { WebArgs } from "./Web.js"

export interface AddverArgs {
  readonly name: string
  readonly version: string
  readonly file: string
  /** Print the added version as JSON instead of a line. */
  readonly json?: boolean
}

/** The global flags, after environment and configuration file fallbacks. */
export interface Globals {
  readonly addr: Option.Option<string>
  readonly fp: Option.Option<string>
  readonly key: Option.Option<string>
  /** -cert: the key's OpenSSH certificate (else <key>-cert.pub beside it). */
  readonly cert?: Option.Option<string>
}

/** The registry answered with a non-zero status; its output was already passed through. */
export class RemoteFailed extends Data.TaggedError("RemoteFailed")<{ readonly code: number }> {}

/** A problem with the command line found before connecting (exit status 2). */
export class CtlUsage extends Data.TaggedError("CtlUsage")<{ readonly message: string }> {}

/** addver: the registry already has this version (asked before uploading anything; exit status 1). */
export class VersionTaken extends Data.TaggedError("VersionTaken")<{ readonly name: string; readonly version: string; readonly hash: string }> {
  get message() {
    return `component ${this.name} already has version ${this.version} (sha256 ${this.hash}); nothing uploaded: choose another -version (deployctl showcomp -name ${this.name} lists them)`
  }
}

export type RemoteError = RemoteFailed | CtlUsage | UsageError | SshError | InvalidArchive | FileError | VersionTaken

export class Remote extends Context.Tag("ctl/Remote")<
  Remote,
  {
    /** Sends a validated command; succeeds when the registry exits 0. */
    readonly run: (globals: Globals, command: Command) => Effect.Effect<void, RemoteError>
    /** Uploads `file` (checked, hashed), then `addver -name -version -hash` on the same connection. */
    readonly addver: (globals: Globals, args: AddverArgs) => Effect.Effect<void, RemoteError>
    /** `deployctl sign`; with `after`, that command runs first on the same connection (`-sign`). */
    readonly sign: (globals: Globals, args: SignArgs, after?: Command) => Effect.Effect<void, RemoteError>
    /** `status -name N -wait` (StatusWait.ts): succeeds when every connected host is current; fails (1) when one failed. */
    readonly statusWait: (globals: Globals, name: ConfigurationName, json: boolean) => Effect.Effect<void, RemoteError>
    /** `deployctl web` (Web.ts): serves the web view until interrupted. */
    readonly web: (globals: Globals, args: WebArgs) => Effect.Effect<void, RemoteError>
    /** `deployctl events`: the registry's event lines until interrupted. */
    readonly events: (globals: Globals) => Effect.Effect<void, RemoteError>
  }
>() {}

/** Connects with the operator policy (src/ssh/ClientConnect.ts): -fp pinned, else known_hosts; -key, else $DEPLOYCTL_KEY, else ssh-agent, else ~/.ssh/id_*. */
const connectTo = (g: Globals) =>
  Effect.flatMap(operatorEnv, (e) =>
    connectOperator({
      addr: Option.getOrUndefined(g.addr),
      fp: Option.getOrUndefined(g.fp),
      keyFile: Option.getOrUndefined(g.key),
      envKey: Option.getOrUndefined(e.envKey),
      certFile: g.cert === undefined ? undefined : Option.getOrUndefined(g.cert),
      agentSocket: Option.getOrUndefined(e.agentSocket),
      home: e.home,
      username: Option.getOrElse(e.user, systemUser) || "deployctl"
    }).pipe(Effect.map(fromClient))
  )

/** Where output goes: process.stdout/stderr in the program, buffers in tests. */
export interface Sink {
  write(chunk: Uint8Array | string, callback?: (err?: Error | null) => void): unknown
}
export interface Io {
  readonly stdout: Sink
  /** Also where the progress bar draws, when it is a TTY. */
  readonly stderr: Sink & Terminal
}

const write = (out: Sink, bytes: Uint8Array) =>
  bytes.length === 0 ? Effect.void : Effect.async<void>((resume) => void out.write(bytes, () => resume(Effect.void)))

/** Writes the registry's output through as it came; a non-zero (or missing) status fails. */
export const passThrough = (io: Io, r: ExecResult): Effect.Effect<void, RemoteFailed> =>
  Effect.zipRight(
    Effect.zipRight(write(io.stdout, r.stdout), write(io.stderr, r.stderr)),
    r.code === 0 ? Effect.void : Effect.fail(new RemoteFailed({ code: r.code ?? 1 }))
  )

const send = (io: Io, op: OperatorClient["Type"], command: Command) => Effect.flatMap(op.run(command), (r) => passThrough(io, r))

const writeText = (out: Sink, text: string) => write(out, Buffer.from(text))

/**
 * The hash of `name`'s version `version` when the registry has it, from `showcomp -json` (an unknown
 * component has no versions). Any other answer is left for addver itself to report.
 */
const existingVersion = (op: OperatorClient["Type"], name: string, version: string): Effect.Effect<string | undefined, SshError> =>
  Effect.map(op.run({ _tag: "showcomp", name: name as ComponentName, json: true }), (r) => {
    if (r.code !== 0) return undefined
    try {
      const doc = JSON.parse(Buffer.from(r.stdout).toString("utf8")) as { Versions?: Array<{ Version?: string; Hash?: string }> }
      return doc.Versions?.find((v) => v.Version === version)?.Hash ?? undefined
    } catch {
      return undefined
    }
  })

/** A placeholder that passes the hash check, so addver's other flags are validated before uploading. */
const noHash = "0".repeat(64)

/** -key (or $DEPLOYCTL_KEY, the config file) signs; else the first key of ssh-agent. */
const signingKey = (g: Globals) =>
  Effect.map(operatorEnv, (e): SigningKey | undefined => {
    const file = Option.getOrUndefined(g.key)
    if (file !== undefined) return { _tag: "File", path: file }
    const socket = Option.getOrUndefined(e.agentSocket)
    return socket ? { _tag: "Agent", socket } : undefined
  })

export const makeRemote = (io: Io): Remote["Type"] => ({
  web: (globals, args) => Effect.flatMap(Effect.promise(() => import("./Web.js")), (Web) => Web.web(connectTo(globals), io, args)),
  events: (globals) => Effect.flatMap(Effect.promise(() => import("./Web.js")), (Web) => Web.events(connectTo(globals), io)),
  run: (globals, command) => Effect.scoped(Effect.flatMap(connectTo(globals), (op) => send(io, op, command))),
  sign: (globals, args, after) =>
    Effect.scoped(
      Effect.gen(function* () {
        const op = yield* connectTo(globals)
        if (after !== undefined) yield* send(io, op, after)
        const { prepare } = yield* Effect.promise(() => import("./Sign.js"))
        const ready = yield* prepare(op.client, args, yield* signingKey(globals), join)
        if ("usage" in ready) return yield* new CtlUsage({ message: ready.usage })
        if ("failed" in ready) return yield* Effect.zipRight(writeText(io.stdout, `${ready.failed}\n`), new RemoteFailed({ code: 1 }))
        if ("print" in ready) return yield* writeText(io.stdout, ready.print)
        yield* send(io, op, { _tag: "addsig", state: ready.state, signature: ready.signature })
      })
    ),
  statusWait: (globals, name, json) =>
    Effect.scoped(
      Effect.gen(function* () {
        const op = yield* connectTo(globals)
        const code = yield* waitForStatus((asJson) => op.run({ _tag: "status", name, json: asJson }), json, {
          out: (text) => writeText(io.stdout, text),
          note: (text) => writeText(io.stderr, text)
        })
        if (code !== 0) return yield* new RemoteFailed({ code })
      })
    ),
  addver: (globals, args) =>
    Effect.scoped(
      Effect.gen(function* () {
        if (args.name === "" || args.version === "" || args.file === "") {
          return yield* new CtlUsage({ message: "name, version and file should all be set" })
        }
        const strings = new Map([
          ["name", args.name],
          ["version", args.version],
          ["hash", noHash]
        ])
        const checked = yield* validate("addver", { strings, bools: new Set(), lists: new Map(), help: false })
        if (checked._tag !== "addver") return yield* Effect.die("validate(addver) returned another command")
        const op = yield* connectTo(globals)
        // Ask first: an existing version would be refused only after the whole upload.
        const taken = yield* existingVersion(op, checked.name, checked.version)
        if (taken !== undefined) return yield* new VersionTaken({ name: checked.name, version: checked.version, hash: taken })
        const { uploadFile } = yield* Effect.promise(() => import("./Upload.js"))
        const up = yield* uploadFile(op.client, args.file, io.stderr)
        yield* send(io, op, { ...checked, hash: up.hash as Sha256 })
        const added = { Name: checked.name, Version: checked.version, Hash: up.hash, Size: up.bytes }
        yield* writeText(
          io.stdout,
          args.json ? `${JSON.stringify(added)}\n` : `added ${checked.name} ${checked.version} sha256 ${up.hash} (${up.bytes} bytes)\n`
        )
      })
    )
})

export const RemoteLive = Layer.succeed(Remote, makeRemote({ stdout: process.stdout, stderr: process.stderr }))
