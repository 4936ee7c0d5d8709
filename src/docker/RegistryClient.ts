// What deploy-from-docker needs from the registry: run an operator command, upload a file.
// The live layer holds one SSH connection for the whole import (operator user, key or ssh-agent,
// host key pinned by fingerprint); tests provide a fake.
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Context, Effect, Layer } from "effect"
import { createReadStream } from "node:fs"
import { type Command, toArgv } from "../domain/Commands.js"
import { LocalIoError } from "../domain/DockerErrors.js"
import { join } from "../domain/ShellWords.js"
import { connectTarget, type Credentials } from "../ssh/ClientConnect.js"
import { exec } from "../ssh/Exec.js"
import { openSftp, upload } from "../ssh/Sftp.js"
import { SshError } from "../ssh/SshError.js"

export interface CommandResult {
  /** Everything the command printed (the registry sends errors to stdout too). */
  readonly output: string
  readonly ok: boolean
}

export class RegistryClient extends Context.Tag("docker/RegistryClient")<
  RegistryClient,
  {
    readonly run: (cmd: Command) => Effect.Effect<CommandResult, SshError>
    /** Uploads a local file; the registry remembers it by its sha256 for `addver -hash`. */
    readonly upload: (file: string, remoteName: string) => Effect.Effect<number, SshError | LocalIoError>
  }
>() {}

export interface Connection {
  readonly host: string
  readonly port: number
  /** Pinned host key fingerprint; undefined: ~/.ssh/known_hosts decides. */
  readonly fingerprint: string | undefined
  /** Resolved credentials (ClientSetup.clientAuth). */
  readonly auth: Credentials
}

export const RegistryClientLive = (c: Connection): Layer.Layer<RegistryClient, SshError> =>
  Layer.scoped(
    RegistryClient,
    Effect.gen(function* () {
      const client = yield* connectTarget(c, c.auth, { username: process.env.USER || "deploy-from-docker" })
      return {
        run: (cmd) =>
          Effect.map(exec(client, join(toArgv(cmd))), (r) => ({
            output: r.stdout.toString("utf8") + r.stderr.toString("utf8"),
            ok: r.code === 0
          })),
        upload: (file, remoteName) =>
          Effect.gen(function* () {
            const sftp = yield* openSftp(client)
            const bytes = NodeStream.fromReadable(
              () => createReadStream(file, { highWaterMark: 1 << 20 }),
              (cause) => new LocalIoError({ message: `cannot read ${file}: ${(cause as Error).message}`, cause })
            )
            return yield* upload(sftp, remoteName, bytes)
          }).pipe(Effect.scoped)
      }
    })
  )
