// The operator's side of the wire, for deployctl and deploy-from-docker alike: the environment they
// read (through Effect's Config), and one connection to the registry that sends catalogue commands
// over exec (canonical argv, shell-quoted so names with spaces or quotes arrive intact, fault 7) and
// uploads files over SFTP. The connection policy (address, host key, credentials) is
// src/ssh/ClientConnect.ts's.
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Config, Context, Effect, Option, type Scope } from "effect"
import { createReadStream } from "node:fs"
import * as os from "node:os"
import type { Client } from "ssh2"
import { type Command, toArgv } from "../domain/Commands.js"
import { LocalIoError } from "../domain/DockerErrors.js"
import { join } from "../domain/ShellWords.js"
import { connectTarget, type Credentials, type Target } from "../ssh/ClientConnect.js"
import { exec, type ExecResult } from "../ssh/Exec.js"
import { openSftp } from "../ssh/Sftp.js"
import { upload } from "../ssh/SftpWrite.js"
import type { SshError } from "../ssh/SshError.js"

/** The login name, when $USER is not set. */
export const systemUser = (): string => {
  try {
    return os.userInfo().username
  } catch {
    return "deployctl"
  }
}

/** What an operator tool reads from the environment (tests provide their own ConfigProvider). */
export interface OperatorEnv {
  readonly addr: Option.Option<string>
  readonly fingerprint: Option.Option<string>
  readonly agentSocket: Option.Option<string>
  readonly envKey: Option.Option<string>
  readonly home: string
  /** $USER: the SSH user name (each program has its fallback). */
  readonly user: Option.Option<string>
}

export const operatorEnv: Effect.Effect<OperatorEnv> = Config.all({
  addr: Config.option(Config.string("DEPLOYCTL_ADDR")),
  fingerprint: Config.option(Config.string("DEPLOYCTL_FINGERPRINT")),
  agentSocket: Config.option(Config.string("SSH_AUTH_SOCK")),
  envKey: Config.option(Config.string("DEPLOYCTL_KEY")),
  home: Config.string("HOME").pipe(Config.withDefault(os.homedir())),
  user: Config.option(Config.string("USER"))
}).pipe(
  Effect.orElseSucceed(() => ({
    addr: Option.none<string>(),
    fingerprint: Option.none<string>(),
    agentSocket: Option.none<string>(),
    envKey: Option.none<string>(),
    home: os.homedir(),
    user: Option.none<string>()
  }))
)

/** The exec payload for a command: canonical argv, shell-quoted. */
export const payload = (command: Command): string => join(toArgv(command))

/** One operator connection to the registry. */
export class OperatorClient extends Context.Tag("operator/OperatorClient")<
  OperatorClient,
  {
    /** The SSH connection itself (deployctl's upload with progress runs on it). */
    readonly client: Client
    /** Runs a catalogue command; its output and exit status, whatever they are. */
    readonly run: (command: Command) => Effect.Effect<ExecResult, SshError>
    /** Uploads a local file; the registry remembers it by its sha256 for `addver -hash`. Resolves with its size. */
    readonly uploadFile: (file: string, remoteName: string) => Effect.Effect<number, SshError | LocalIoError>
  }
>() {}

export const fromClient = (client: Client): OperatorClient["Type"] => ({
  client,
  run: (command) => exec(client, payload(command)),
  uploadFile: (file, remoteName) =>
    Effect.gen(function* () {
      const sftp = yield* openSftp(client)
      const bytes = NodeStream.fromReadable(
        () => createReadStream(file, { highWaterMark: 1 << 20 }),
        (cause) => new LocalIoError({ message: `cannot read ${file}: ${(cause as Error).message}`, cause })
      )
      return yield* upload(sftp, remoteName, bytes)
    }).pipe(Effect.scoped)
})

/** Connects to a checked target with resolved credentials (scoped: the connection ends with the scope). */
export const connectOperatorClient = (
  target: Target,
  auth: Credentials,
  opts: { readonly username: string; readonly home?: string | undefined }
): Effect.Effect<OperatorClient["Type"], SshError, Scope.Scope> => Effect.map(connectTarget(target, auth, opts), fromClient)
