// What deploy-from-docker needs from the registry: run an operator command, upload a file.
// The live layer holds one SSH connection for the whole import (operator user, key or ssh-agent,
// host key pinned by fingerprint); tests provide a fake.
//
// Mixed fleets: the original Go registry has no `-json`. Its flag package answers an unknown flag
// with `flag provided but not defined: -json` and the command's usage (exit 1); then the command is
// run again without `-json` and its plain table (DESIGN.md: `showcomp` `ctime   version`, `showconf`
// `component   version   ctime`) is turned into the JSON shape our registry prints, without the
// hashes a table does not carry. The first such reply makes the connection use plain output only.
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Context, Effect, Layer } from "effect"
import { createReadStream } from "node:fs"
import { type Command, toArgv } from "../domain/Commands.js"
import { LocalIoError } from "../domain/DockerErrors.js"
import { join } from "../domain/ShellWords.js"
import { connectTarget, type Credentials } from "../ssh/ClientConnect.js"
import { exec } from "../ssh/Exec.js"
import { openSftp } from "../ssh/Sftp.js"
import { upload } from "../ssh/SftpWrite.js"
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

/** The Go registry's reply to a flag it does not define (Go's `flag` package, ContinueOnError). */
export const unknownJsonFlag = (output: string): boolean => output.includes("flag provided but not defined: -json")

const rows = (output: string) =>
  output
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .map((l) => l.split(/\s+/))

/** Commands whose plain output carries what their `-json` output is read for. */
const PLAIN_FORMS = new Set<Command["_tag"]>(["showcomp", "showconf", "components", "configurations"])

/**
 * A plain (table) reply as the JSON our registry prints for `cmd -json`; failures pass through as they
 * are (`configuration "x" not found`). Undefined for a command that has no JSON form to recover.
 */
export const plainToJson = (cmd: Command, plain: CommandResult): CommandResult | undefined => {
  if (!plain.ok) return plain
  const json = (v: unknown): CommandResult => ({ output: `${JSON.stringify(v)}\n`, ok: true })
  switch (cmd._tag) {
    case "showcomp": // `2017-03-01T11:23:36Z   v01`, oldest first; nothing for an unknown component
      return json({ Name: cmd.name, Versions: rows(plain.output).map(([ctime, ...v]) => ({ Version: v.join(" "), Ctime: ctime })) })
    case "showconf": // `code     v01   2017-03-01T11:28:18Z`
      return json({
        Name: cmd.name,
        Layers: rows(plain.output).map((r) => ({ Name: r.slice(0, -2).join(" "), Version: r.at(-2), Ctime: r.at(-1) }))
      })
    case "components":
    case "configurations":
      return json(plain.output.split("\n").filter((l) => l !== ""))
    default:
      return undefined
  }
}

export const RegistryClientLive = (c: Connection): Layer.Layer<RegistryClient, SshError> =>
  Layer.scoped(
    RegistryClient,
    Effect.gen(function* () {
      const client = yield* connectTarget(c, c.auth, { username: process.env.USER || "deploy-from-docker" })
      const runPlain = (cmd: Command) =>
        Effect.map(exec(client, join(toArgv(cmd))), (r): CommandResult => ({
          output: r.stdout.toString("utf8") + r.stderr.toString("utf8"),
          ok: r.code === 0
        }))
      let goRegistry = false
      const asPlain = (cmd: Command) =>
        Effect.map(runPlain({ ...cmd, json: false } as Command), (plain) => plainToJson(cmd, plain) ?? plain)
      return {
        run: (cmd) => {
          if (!("json" in cmd) || !cmd.json) return runPlain(cmd)
          if (goRegistry && PLAIN_FORMS.has(cmd._tag)) return asPlain(cmd)
          return Effect.flatMap(runPlain(cmd), (r) => {
            if (r.ok || !unknownJsonFlag(r.output) || !PLAIN_FORMS.has(cmd._tag)) return Effect.succeed(r)
            goRegistry = true
            return asPlain(cmd)
          })
        },
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
