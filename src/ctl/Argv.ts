// deployctl's command line, parsed here and nowhere else, in the Go `flag` style of the original
// (`-name x`, `-name=x`, `--name x`). Flags may stand before or after the command; global flags
// (`-addr`, `-fp`, `-key`, `-r`) anywhere. Every problem is one UsageError whose message says what
// was wrong and what to type, with "did you mean" for a misspelt command or flag.
import { Either } from "effect"
import type { FlagKind, FlagSpec, RawFlags } from "../domain/Commands.js"
import { UsageError } from "../domain/Errors.js"

export interface ArgvSpec {
  /** Flags of deployctl itself (`-addr`, `-fp`, `-key`, `-r`). */
  readonly globals: ReadonlyArray<FlagSpec>
  /** Flags of each command, by name. */
  readonly commands: ReadonlyMap<string, ReadonlyArray<FlagSpec>>
}

/** Shells `--completions` can write a script for. */
export const shells = ["sh", "bash", "fish", "zsh"] as const

export type Parsed =
  | { readonly _tag: "Help"; readonly command: string | undefined }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Completions"; readonly shell: (typeof shells)[number] }
  | { readonly _tag: "Run"; readonly command: string; readonly globals: ReadonlyMap<string, string>; readonly flags: RawFlags }

const usage = (message: string) => new UsageError({ message })

/** Edit distance (insert, delete, substitute, swap of neighbours), for "did you mean". */
const distance = (a: string, b: string): number => {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}

/** The candidate closest to `word`, when it is close enough to be a likely typo. */
export const closest = (word: string, candidates: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    const dist = distance(word.toLowerCase(), c.toLowerCase())
    if (dist < bestD) [best, bestD] = [c, dist]
  }
  return best !== undefined && bestD <= Math.max(1, Math.min(2, Math.floor(word.length / 3))) ? best : undefined
}

export const unknownCommand = (spec: ArgvSpec, word: string) => {
  const near = closest(word, spec.commands.keys())
  return usage(`unknown command "${word}"${near ? `; did you mean ${near}?` : ""} (deployctl help lists the commands)`)
}

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

interface Given {
  readonly name: string
  readonly kind: FlagKind
  readonly value: string | boolean
}

/** Parses deployctl's argv (without node and script). */
export const parseArgv = (spec: ArgvSpec, argv: ReadonlyArray<string>): Either.Either<Parsed, UsageError> => {
  const globals = new Map<string, string>()
  const given: Array<Given> = []
  const positional: Array<string> = []
  let command: string | undefined
  let topic: string | undefined // `help <command>`
  let help = false
  let version = false
  let completions: string | undefined
  const allFlags = [...spec.commands.values()].flat()
  const flagsOf = (c: string | undefined) => (c === undefined ? allFlags : spec.commands.get(c)!)
  const hint = () => (command === undefined ? "deployctl -h" : `deployctl ${command} -h`)

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      positional.push(...argv.slice(i + 1))
      break
    }
    const word = asFlag(arg)
    if (word === undefined) {
      if (command === undefined) {
        if (!spec.commands.has(arg)) return Either.left(unknownCommand(spec, arg))
        command = arg
      } else if (command === "help" && topic === undefined) {
        if (!spec.commands.has(arg)) return Either.left(unknownCommand(spec, arg))
        topic = arg
      } else positional.push(arg)
      continue
    }
    const value = (kind: FlagKind): Either.Either<string | boolean, UsageError> => {
      if (kind === "bool") {
        const v = word.inline
        if (v === undefined || v === "true" || v === "1") return Either.right(true)
        if (v === "false" || v === "0") return Either.right(false)
        return Either.left(usage(`invalid boolean value "${v}" for -${word.name}: write -${word.name} or -${word.name}=false`))
      }
      if (word.inline !== undefined) return Either.right(word.inline)
      if (i + 1 >= argv.length) return Either.left(usage(`flag needs an argument: -${word.name} (write -${word.name} VALUE)`))
      return Either.right(argv[++i]!)
    }
    if (word.name === "h" || word.name === "help") {
      help = true
      continue
    }
    const own = flagsOf(command).find((f) => f.name === word.name)
    if (word.name === "version" && (command === undefined || own === undefined)) {
      version = true
      continue
    }
    if (word.name === "completions") {
      const v = value("string")
      if (Either.isLeft(v)) return Either.left(v.left)
      completions = String(v.right)
      continue
    }
    const global = spec.globals.find((f) => f.name === word.name)
    const flag = own ?? global
    if (flag === undefined) {
      const near = closest(word.name, [...flagsOf(command), ...spec.globals].map((f) => f.name))
      return Either.left(
        usage(`flag provided but not defined: -${word.name}${command ? ` (${command})` : ""}${near ? `; did you mean -${near}?` : ""} (see ${hint()})`)
      )
    }
    const v = value(flag.kind)
    if (Either.isLeft(v)) return Either.left(v.left)
    if (flag === global && own === undefined) globals.set(flag.name, String(v.right))
    else given.push({ name: flag.name, kind: flag.kind, value: v.right })
  }

  if (completions !== undefined) {
    const shell = shells.find((s) => s === completions)
    if (shell === undefined) return Either.left(usage(`--completions: no completions for "${completions}"; choose one of ${shells.join(", ")}`))
    return Either.right({ _tag: "Completions", shell })
  }
  if (help) return Either.right({ _tag: "Help", command: command === "help" ? topic : command })
  if (version) return Either.right({ _tag: "Version" })
  if (command === undefined) return Either.left(usage("no command given: deployctl help lists the commands, deployctl -h explains the flags"))
  if (command === "help") return Either.right({ _tag: "Help", command: topic })
  if (positional.length > 0) {
    const takesName = spec.commands.get(command)!.some((f) => f.name === "name")
    const guess = takesName && !given.some((g) => g.name === "name") ? `; did you mean -name ${positional[0]}?` : ""
    return Either.left(usage(`unexpected argument "${positional[0]}": ${command} takes flags only${guess} (see ${hint()})`))
  }
  // Flags given before the command were looked up among every command's; they must be this one's.
  const mine = spec.commands.get(command)!
  const strings = new Map<string, string>()
  const bools = new Set<string>()
  const lists = new Map<string, Array<string>>()
  for (const g of given) {
    if (!mine.some((f) => f.name === g.name)) {
      const near = closest(g.name, mine.map((f) => f.name))
      return Either.left(usage(`flag provided but not defined: -${g.name} (${command})${near ? `; did you mean -${near}?` : ""} (see ${hint()})`))
    }
    if (g.kind === "bool") {
      if (g.value === true) bools.add(g.name)
      else bools.delete(g.name)
    } else if (g.kind === "list") lists.set(g.name, [...(lists.get(g.name) ?? []), String(g.value)])
    else strings.set(g.name, String(g.value))
  }
  return Either.right({ _tag: "Run", command, globals, flags: { strings, bools, lists, help: false } })
}

/** Whether the command line asks for JSON (`-json` anywhere), so that errors are JSON too. */
export const wantsJson = (argv: ReadonlyArray<string>): boolean => {
  let json = false
  for (const a of argv) {
    if (a === "--") break
    const w = asFlag(a)
    if (w?.name === "json") json = w.inline === undefined || w.inline === "true" || w.inline === "1"
  }
  return json
}
