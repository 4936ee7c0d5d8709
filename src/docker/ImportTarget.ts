// The registry as deploy-from-docker publishes to it: run an operator command (output and status),
// upload a file. The live layer holds one operator connection (src/operator/OperatorClient.ts) for the
// whole import (key or ssh-agent, host key pinned by fingerprint); tests provide a fake.
//
// Mixed fleets: the original Go registry has no `-json`. Its flag package answers an unknown flag
// with `flag provided but not defined: -json` and the command's usage (exit 1); then the command is
// run again without `-json` and its plain table (DESIGN.md: `showcomp` `ctime   version`, `showconf`
// `component   version   ctime`) is turned into the JSON shape our registry prints, without the
// hashes a table does not carry. The first such reply makes the connection use plain output only.
import { Context, Effect, Layer } from "effect"
import type { Command } from "../domain/Commands.js"
import type { LocalIoError } from "../domain/DockerErrors.js"
import { connectOperatorClient } from "../operator/OperatorClient.js"
import type { Credentials, Target } from "../ssh/ClientConnect.js"
import type { SshError } from "../ssh/SshError.js"

export interface CommandResult {
  /** Everything the command printed (the registry sends errors to stdout too). */
  readonly output: string
  readonly ok: boolean
}

export class ImportTarget extends Context.Tag("docker/ImportTarget")<
  ImportTarget,
  {
    readonly run: (cmd: Command) => Effect.Effect<CommandResult, SshError>
    /** Uploads a local file; the registry remembers it by its sha256 for `addver -hash`. */
    readonly upload: (file: string, remoteName: string) => Effect.Effect<number, SshError | LocalIoError>
  }
>() {}

export interface Connection extends Target {
  /** Resolved credentials (ClientConnect.credentials), up front. */
  readonly auth: Credentials
  /** The SSH user name. */
  readonly username: string
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

export const ImportTargetLive = (c: Connection): Layer.Layer<ImportTarget, SshError> =>
  Layer.scoped(
    ImportTarget,
    Effect.gen(function* () {
      const op = yield* connectOperatorClient(c, c.auth, { username: c.username })
      const runPlain = (cmd: Command) =>
        Effect.map(op.run(cmd), (r): CommandResult => ({
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
        upload: op.uploadFile
      }
    })
  )
