// deployctl's command tree, generated from the shared catalogue (src/domain/Commands.ts): one
// @effect/cli subcommand per operator command, one option per catalogue flag, so the registry
// and deployctl can never disagree on names. Handlers validate with the catalogue's own
// `validate` and hand the typed Command to the Remote service. `addver` takes `-file` in place of
// `-hash` (upload + check + addver in one step).
import * as Cli from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as CliApp from "@effect/cli/CliApp"
import { isValidationError, type ValidationError } from "@effect/cli/ValidationError"
import { Config, Console, Effect, Either, Option } from "effect"
import { catalogue, type CommandName, type CommandSpec, commandList, type FlagSpec, type RawFlags, validate } from "../domain/Commands.js"
import type { UnknownCommand } from "../domain/Errors.js"
import { type ArgvSpec, normalize } from "./Argv.js"
import { CtlUsage, type Globals, type Io, Remote, type RemoteError } from "./Remote.js"

export const VERSION = "0.1.0"

export const globalFlags: ReadonlyArray<FlagSpec> = [
  { name: "addr", kind: "string", description: "registry address host:port (default $DEPLOYCTL_ADDR)" },
  {
    name: "fp",
    kind: "string",
    description: "registry host key fingerprint, SHA256:... as deploy-registry logs it (default $DEPLOYCTL_FINGERPRINT); without it ~/.ssh/known_hosts decides"
  },
  {
    name: "key",
    kind: "string",
    description: "ssh private key file (default $DEPLOYCTL_KEY, else ssh-agent via $SSH_AUTH_SOCK, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa)"
  },
  { name: "cert", kind: "string", description: "OpenSSH certificate for the key (default <key>-cert.pub when it exists)" }
]

const envOf: Record<string, string> = { addr: "DEPLOYCTL_ADDR", fp: "DEPLOYCTL_FINGERPRINT" }

const fileFlag: FlagSpec = { name: "file", kind: "string", description: "the .tar.gz to upload (checked, hashed and uploaded in one pass)" }

/** The flags deployctl takes for a command: the catalogue's, except addver's -hash is -file. */
export const ctlFlags = (spec: CommandSpec): ReadonlyArray<FlagSpec> =>
  spec.name === "addver" ? [...spec.flags.filter((f) => f.name !== "hash"), fileFlag] : spec.flags

/** A command's one-line description in deployctl (addver uploads too). */
const summaryOf = (spec: CommandSpec) => (spec.name === "addver" ? "upload a .tar.gz and add it as a new component version" : spec.summary)

export const argvSpec: ArgvSpec = {
  globals: globalFlags,
  commands: new Map(catalogue.map((c) => [c.name as string, ctlFlags(c)]))
}

type Value = Option.Option<string> | boolean | ReadonlyArray<string>

const option = (flag: FlagSpec): Options.Options<Value> => {
  switch (flag.kind) {
    case "bool":
      return Options.boolean(flag.name).pipe(Options.withDescription(flag.description))
    case "list":
      return Options.text(flag.name).pipe(Options.repeated, Options.withDescription(flag.description))
    case "string":
      return Options.text(flag.name).pipe(Options.optional, Options.withDescription(flag.description))
  }
}

/** Parsed option values back into the catalogue's RawFlags. */
export const toRaw = (flags: ReadonlyArray<FlagSpec>, values: Readonly<Record<string, Value>>): RawFlags => {
  const strings = new Map<string, string>()
  const bools = new Set<string>()
  const lists = new Map<string, ReadonlyArray<string>>()
  for (const f of flags) {
    const v = values[f.name]
    if (f.kind === "bool" && v === true) bools.add(f.name)
    else if (f.kind === "list" && Array.isArray(v) && v.length > 0) lists.set(f.name, v)
    else if (f.kind === "string" && Option.isOption(v) && Option.isSome(v)) strings.set(f.name, v.value)
  }
  return { strings, bools, lists, help: false }
}

const globalOption = (flag: FlagSpec) => {
  const base = Options.text(flag.name).pipe(Options.withDescription(flag.description))
  const env = envOf[flag.name]
  return (env === undefined ? base : base.pipe(Options.withFallbackConfig(Config.string(env)))).pipe(Options.optional)
}

const root = Cli.make(
  "deployctl",
  {
    addr: globalOption(globalFlags[0]!),
    fp: globalOption(globalFlags[1]!),
    key: globalOption(globalFlags[2]!),
    cert: globalOption(globalFlags[3]!)
  },
  () => Effect.fail(new CtlUsage({ message: "no command given; run deployctl help for the command list, or deployctl -h" }))
)

const handler = (spec: CommandSpec) => (values: Readonly<Record<string, Value>>) =>
  Effect.gen(function* () {
    const globals: Globals = yield* root
    const raw = toRaw(ctlFlags(spec), values)
    const remote = yield* Remote
    if (spec.name === "help") return yield* Console.log(commandList().trimEnd())
    if (spec.name === "addver") {
      const get = (n: string) => raw.strings.get(n) ?? ""
      return yield* remote.addver(globals, { name: get("name"), version: get("version"), file: get("file") })
    }
    const command = yield* validate(spec.name as CommandName, raw)
    return yield* remote.run(globals, command)
  })

const subcommand = (spec: CommandSpec) =>
  Cli.make(spec.name, Object.fromEntries(ctlFlags(spec).map((f) => [f.name, option(f)])), handler(spec)).pipe(
    Cli.withDescription(summaryOf(spec))
  )

const [first, ...rest] = catalogue.map(subcommand)

export const command = root.pipe(
  Cli.withDescription("manage a deploy-registry over SSH: one subcommand per registry command"),
  Cli.withSubcommands([first!, ...rest])
)

const flagHelp = (f: FlagSpec) =>
  `  -${f.name}${f.kind === "bool" ? "" : f.kind === "list" ? " value (repeatable)" : " string"}\n    \t${f.description}\n`

// Our own help, from the catalogue, in the style of Go's flag package (the original tool's):
// @effect/cli's prints each option's type as a paragraph ("A user-defined piece of text.") and
// a subcommand's usage without the program name, and it cannot be told otherwise.
export const topHelp = (): string => {
  const width = Math.max(...catalogue.map((c) => c.name.length)) + 3
  return (
    `deployctl ${VERSION}: manage a deploy-registry over SSH, one subcommand per registry command\n\n` +
    `Usage: deployctl [-addr host:port] [-fp SHA256:...] [-key file] <command> [flags]\n\n` +
    `Global flags (before or after the command):\n${globalFlags.map(flagHelp).join("")}\n` +
    `Commands:\n${catalogue.map((c) => `  ${c.name.padEnd(width)}${summaryOf(c)}\n`).join("")}\n` +
    `Run deployctl <command> -h for a command's flags. Flags are written -name x, -name=x or --name x.\n` +
    `Also: deployctl --version, deployctl --completions sh|bash|fish|zsh.\n`
  )
}

export const commandHelp = (spec: CommandSpec): string => {
  const flags = ctlFlags(spec)
  return (
    `Usage: deployctl [global flags] ${spec.name}${flags.length > 0 ? " [flags]" : ""}\n\n${summaryOf(spec)}\n` +
    (flags.length > 0 ? `\nFlags:\n${flags.map(flagHelp).join("")}` : "") +
    `\nGlobal flags: ${globalFlags.map((f) => `-${f.name}`).join(", ")} (see deployctl -h)\n`
  )
}

/**
 * Whether a normalized argv asks for help (-h/--help as a flag, not as a flag's value), and for
 * which command; undefined when it does not.
 */
export const helpRequest = (args: ReadonlyArray<string>): { readonly command: CommandSpec | undefined } | undefined => {
  let command: CommandSpec | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === "--") return undefined
    if (a === "-h" || a === "--help") return { command }
    if (!a.startsWith("-")) {
      if (command !== undefined) return undefined // a positional: let @effect/cli complain
      command = catalogue.find((c) => c.name === a)
      if (command === undefined) return undefined
      continue
    }
    const name = a.replace(/^--?/, "")
    const flag = (command === undefined ? [] : ctlFlags(command)).find((f) => f.name === name) ?? globalFlags.find((f) => f.name === name)
    if (flag !== undefined ? flag.kind !== "bool" : name === "completions" || name === "log-level") i++ // skip its value
  }
  return undefined
}

const ansi = /\x1b\[[0-9;]*m/g

/**
 * Effect's Console, minus colour codes on streams that are not terminals (or with NO_COLOR):
 * @effect/cli colours its help and errors unconditionally.
 */
export const plainConsole = (colour: { readonly stdout: boolean; readonly stderr: boolean }) =>
  Console.consoleWith((base) => {
    const plain = (keep: boolean) => (args: ReadonlyArray<unknown>) => (keep ? args : args.map((a) => (typeof a === "string" ? a.replace(ansi, "") : a)))
    const out = plain(colour.stdout)
    const err = plain(colour.stderr)
    return Effect.succeed<Console.Console>({
      ...base,
      log: (...a) => base.log(...out(a)),
      error: (...a) => base.error(...err(a)),
      unsafe: { ...base.unsafe, log: (...a) => base.unsafe.log(...out(a)), error: (...a) => base.unsafe.error(...err(a)) }
    })
  })

/** Runs deployctl on an already normalized argv (without node and script). */
export const run = (args: ReadonlyArray<string>): Effect.Effect<void, RemoteError | ValidationError, Remote | CliApp.CliApp.Environment> =>
  Cli.run(command, { name: "deployctl", version: VERSION, executable: "deployctl" })(["node", "deployctl", ...args])

/**
 * The whole program on `argv` (without node and script): its exit status. 0 ok; 1 the registry
 * said no (its output already passed through) or the connection, host key, key or upload failed
 * (one line on `io.stderr`); 2 a usage error.
 */
export const main = (argv: ReadonlyArray<string>, io: Io): Effect.Effect<number, never, Remote | CliApp.CliApp.Environment> => {
  const line = (s: string) => Effect.sync(() => void io.stderr.write(`deployctl: ${s}\n`))
  const args = normalize(argvSpec, argv)
  const help = Either.isRight(args) ? helpRequest(args.right) : undefined
  const program: Effect.Effect<void, RemoteError | UnknownCommand | ValidationError, Remote | CliApp.CliApp.Environment> = Either.isLeft(
    args
  )
    ? Effect.fail(args.left)
    : help !== undefined
      ? Console.log((help.command === undefined ? topHelp() : commandHelp(help.command)).trimEnd())
      : run(args.right)
  return program.pipe(
    Effect.as(0),
    Effect.catchAll((e): Effect.Effect<number> => {
      if (isValidationError(e)) return Effect.succeed(2) // @effect/cli printed it
      switch (e._tag) {
        case "RemoteFailed":
          return Effect.succeed(e.code) // the registry's output was passed through
        case "UnknownCommand":
          return Effect.as(Effect.zipRight(line(e.message), Effect.sync(() => void io.stderr.write("\n" + commandList()))), 2)
        case "UsageError":
        case "CtlUsage":
          return Effect.as(line(e.message), 2)
        case "SshError":
        case "InvalidArchive":
        case "FileError":
          return Effect.as(line(e.message), 1)
      }
    }),
    Effect.catchAllDefect((d) => Effect.as(line(`internal error: ${d instanceof Error ? d.message : String(d)}`), 1))
  )
}
