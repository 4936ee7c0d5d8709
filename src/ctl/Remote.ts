// deployctl's side of the wire: connect to the registry (host key pinned by -fp, else
// ~/.ssh/known_hosts), send one validated catalogue command over exec, shell-quoted so names
// with spaces or quotes arrive intact (fault 7), and pass the registry's output and exit status
// through unchanged. `addver -file` uploads first (Upload.ts) on the same connection.
import { Config, Context, Data, Effect, Layer, Option } from "effect"
import * as os from "node:os"
import type { Client } from "ssh2"
import type { Command } from "../domain/Commands.js"
import { toArgv, validate } from "../domain/Commands.js"
import type { UsageError } from "../domain/Errors.js"
import type { ComponentName, ConfigurationName, Sha256 } from "../domain/Names.js"
import { join } from "../domain/ShellWords.js"
import { connectOperator } from "../ssh/ClientConnect.js"
import { exec, type ExecResult } from "../ssh/Exec.js"
import type { SshError } from "../ssh/SshError.js"
import type { Terminal } from "./Progress.js"
import { waitForStatus } from "./StatusWait.js"
import { type FileError, type InvalidArchive, uploadFile } from "./Upload.js"

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
    /** `status -name N -wait` (StatusWait.ts): succeeds when every connected host is current; fails (1) when one failed. */
    readonly statusWait: (globals: Globals, name: ConfigurationName, json: boolean) => Effect.Effect<void, RemoteError>
  }
>() {}

const systemUser = (): string => {
  try {
    return os.userInfo().username
  } catch {
    return "deployctl"
  }
}

/** The environment deployctl reads, through Effect's Config (tests provide their own). */
const env = Config.all({
  agentSocket: Config.option(Config.string("SSH_AUTH_SOCK")),
  envKey: Config.option(Config.string("DEPLOYCTL_KEY")),
  home: Config.string("HOME").pipe(Config.withDefault(os.homedir())),
  user: Config.string("USER").pipe(Config.withDefault(systemUser()))
}).pipe(
  Effect.orElseSucceed(() => ({ agentSocket: Option.none<string>(), envKey: Option.none<string>(), home: os.homedir(), user: systemUser() }))
)

/** Connects with the operator policy (src/ssh/ClientConnect.ts): -fp pinned, else known_hosts; -key, else $DEPLOYCTL_KEY, else ssh-agent, else ~/.ssh/id_*. */
const connectTo = (g: Globals) =>
  Effect.flatMap(env, (e) =>
    connectOperator({
      addr: Option.getOrUndefined(g.addr),
      fp: Option.getOrUndefined(g.fp),
      keyFile: Option.getOrUndefined(g.key),
      envKey: Option.getOrUndefined(e.envKey),
      certFile: g.cert === undefined ? undefined : Option.getOrUndefined(g.cert),
      agentSocket: Option.getOrUndefined(e.agentSocket),
      home: e.home,
      username: e.user || "deployctl"
    })
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

/** The exec payload for a command: canonical argv, shell-quoted. */
export const payload = (command: Command): string => join(toArgv(command))

const send = (io: Io, client: Client, command: Command) => Effect.flatMap(exec(client, payload(command)), (r) => passThrough(io, r))

const writeText = (out: Sink, text: string) => write(out, Buffer.from(text))

/**
 * The hash of `name`'s version `version` when the registry has it, from `showcomp -json` (an unknown
 * component has no versions). Any other answer is left for addver itself to report.
 */
const existingVersion = (client: Client, name: string, version: string): Effect.Effect<string | undefined, SshError> =>
  Effect.map(exec(client, payload({ _tag: "showcomp", name: name as ComponentName, json: true })), (r) => {
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

export const makeRemote = (io: Io): Remote["Type"] => ({
  run: (globals, command) => Effect.scoped(Effect.flatMap(connectTo(globals), (client) => send(io, client, command))),
  statusWait: (globals, name, json) =>
    Effect.scoped(
      Effect.gen(function* () {
        const client = yield* connectTo(globals)
        const code = yield* waitForStatus((asJson) => exec(client, payload({ _tag: "status", name, json: asJson })), json, {
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
        const client = yield* connectTo(globals)
        // Ask first: an existing version would be refused only after the whole upload.
        const taken = yield* existingVersion(client, checked.name, checked.version)
        if (taken !== undefined) return yield* new VersionTaken({ name: checked.name, version: checked.version, hash: taken })
        const up = yield* uploadFile(client, args.file, io.stderr)
        yield* send(io, client, { ...checked, hash: up.hash as Sha256 })
        const added = { Name: checked.name, Version: checked.version, Hash: up.hash, Size: up.bytes }
        yield* writeText(
          io.stdout,
          args.json ? `${JSON.stringify(added)}\n` : `added ${checked.name} ${checked.version} sha256 ${up.hash} (${up.bytes} bytes)\n`
        )
      })
    )
})

export const RemoteLive = Layer.succeed(Remote, makeRemote({ stdout: process.stdout, stderr: process.stderr }))
