// Normalizes deployctl's command line for @effect/cli. Existing scripts use Go `flag` style
// (`-name x`, `-name=x`); @effect/cli wants `--name x`, keeps single-dash for one-letter flags
// (`-v`, `-h`), cannot take `--layer=x` on repeated options, and reads the parent's options
// (`--addr`) only before the subcommand. So: every known flag becomes `--name value` (or `-v`),
// global flags move in front of the subcommand, and unknown flags / subcommands become one clear
// usage error here instead of a page of help.
import { Either } from "effect"
import type { FlagSpec } from "../domain/Commands.js"
import { UnknownCommand, UsageError } from "../domain/Errors.js"

export interface ArgvSpec {
  /** Flags of the root command (`-addr`, `-fp`, `-key`). */
  readonly globals: ReadonlyArray<FlagSpec>
  /** Flags of each subcommand, by name. */
  readonly commands: ReadonlyMap<string, ReadonlyArray<FlagSpec>>
}

/** @effect/cli's own flags; kept (in `--name` form) wherever they appear. */
const builtIns: ReadonlyArray<FlagSpec> = [
  { name: "help", kind: "bool", description: "" },
  { name: "h", kind: "bool", description: "" },
  { name: "completions", kind: "string", description: "" },
  { name: "log-level", kind: "string", description: "" },
  { name: "wizard", kind: "bool", description: "" }
]
/** `--version` of the program; only before the subcommand (subcommands have a `-version` flag). */
const programVersion: FlagSpec = { name: "version", kind: "bool", description: "" }

const usage = (message: string) => new UsageError({ message })

const spelled = (flag: FlagSpec) => (flag.name.length === 1 ? `-${flag.name}` : `--${flag.name}`)

interface Word {
  readonly name: string
  readonly inline: string | undefined
}

const asFlag = (arg: string): Word | undefined => {
  if (!arg.startsWith("-") || arg === "-" || arg === "--") return undefined
  const body = arg.replace(/^--?/, "")
  const eq = body.indexOf("=")
  return eq < 0 ? { name: body, inline: undefined } : { name: body.slice(0, eq), inline: body.slice(eq + 1) }
}

export const normalize = (
  spec: ArgvSpec,
  argv: ReadonlyArray<string>
): Either.Either<Array<string>, UsageError | UnknownCommand> => {
  const globals: Array<string> = []
  const before: Array<string> = [] // built-ins given before the subcommand
  const after: Array<string> = []
  let command: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      // Everything after `--` is positional; subcommands take none, @effect/cli will say so.
      after.push(...argv.slice(i + 1))
      break
    }
    const word = asFlag(arg)
    if (word === undefined) {
      if (command !== undefined) {
        after.push(arg)
        continue
      }
      if (!spec.commands.has(arg)) return Either.left(new UnknownCommand({ command: arg }))
      command = arg
      continue
    }
    const own = command === undefined ? undefined : spec.commands.get(command)!.find((f) => f.name === word.name)
    const flag =
      own ??
      spec.globals.find((f) => f.name === word.name) ??
      builtIns.find((f) => f.name === word.name) ??
      (command === undefined && word.name === "version" ? programVersion : undefined)
    if (flag === undefined) {
      return Either.left(usage(`flag provided but not defined: -${word.name}${command ? ` (${command})` : ""}`))
    }
    const out = own === undefined && spec.globals.includes(flag) ? globals : command === undefined ? before : after
    if (flag.kind === "bool") {
      const v = word.inline
      if (v === undefined || v === "true" || v === "1") out.push(spelled(flag))
      else if (v !== "false" && v !== "0") return Either.left(usage(`invalid boolean value "${v}" for -${flag.name}`))
      continue
    }
    let value = word.inline
    if (value === undefined) {
      if (i + 1 >= argv.length) return Either.left(usage(`flag needs an argument: -${flag.name}`))
      value = argv[++i]!
    }
    out.push(spelled(flag), value)
  }
  // @effect/cli only recognizes its own flags (-h, --completions, --version) at the top when no
  // other option precedes them; without a subcommand the globals mean nothing anyway.
  if (command === undefined && before.length > 0) return Either.right(before)
  return Either.right([...globals, ...before, ...(command === undefined ? [] : [command]), ...after])
}
