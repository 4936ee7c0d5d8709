// deployctl's command line, read by the one Go-style flag parser (src/domain/Flags.ts) as the original
// (`-name x`, `-name=x`, `--name x`). Flags may stand before or after the command; global flags
// (`-addr`, `-fp`, `-key`, `-r`) anywhere. Every problem is one UsageError whose message says what
// was wrong and what to type, with "did you mean" for a misspelt command or flag.
import { Either } from "effect"
import { boolValue, flag, type FlagProblem, type FlagSpec, flagWord, type Given, type RawFlags, rawFlags, scanFlags } from "../domain/Flags.js"
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

/** Flags deployctl reads itself, besides the globals and the commands' own. */
const versionFlag = flag("version", "print the version and exit", "bool")
const completionsFlag = flag("completions", "write a completion script for this shell")

/** Parses deployctl's argv (without node and script). */
export const parseArgv = (spec: ArgvSpec, argv: ReadonlyArray<string>): Either.Either<Parsed, UsageError> => {
  const positional: Array<string> = []
  let command: string | undefined
  let topic: string | undefined // `help <command>`
  let badCommand: string | undefined
  const allFlags = [...spec.commands.values()].flat()
  const flagsOf = (c: string | undefined) => (c === undefined ? allFlags : spec.commands.get(c)!)
  const hint = () => (command === undefined ? "deployctl -h" : `deployctl ${command} -h`)

  const scanned = scanFlags(argv, {
    // Before the command, a flag is looked up among every command's; it is checked against the command's below.
    lookup: (name) => {
      const own = flagsOf(command).find((f) => f.name === name)
      if (name === "version" && (command === undefined || own === undefined)) return versionFlag
      if (name === "completions") return completionsFlag
      return own ?? spec.globals.find((f) => f.name === name)
    },
    word: (arg) => {
      if (command === undefined || (command === "help" && topic === undefined)) {
        if (!spec.commands.has(arg)) {
          badCommand = arg
          return false
        }
        if (command === undefined) command = arg
        else topic = arg
      } else positional.push(arg)
      return true
    }
  })
  if (Either.isLeft(scanned)) return Either.left(problem(scanned.left, command, hint, [...flagsOf(command), ...spec.globals]))
  if (badCommand !== undefined) return Either.left(unknownCommand(spec, badCommand))
  positional.push(...scanned.right.rest) // after `--`

  const globals = new Map<string, string>()
  const given: Array<Given> = []
  let version = false
  let completions: string | undefined
  for (const g of scanned.right.given) {
    if (g.spec === versionFlag) version = true
    else if (g.spec === completionsFlag) completions = String(g.value)
    else if (spec.globals.includes(g.spec)) globals.set(g.spec.name, String(g.value))
    else given.push(g)
  }

  if (completions !== undefined) {
    const shell = shells.find((s) => s === completions)
    if (shell === undefined) return Either.left(usage(`--completions: no completions for "${completions}"; choose one of ${shells.join(", ")}`))
    return Either.right({ _tag: "Completions", shell })
  }
  if (scanned.right.help) return Either.right({ _tag: "Help", command: command === "help" ? topic : command })
  if (version) return Either.right({ _tag: "Version" })
  if (command === undefined) return Either.left(usage("no command given: deployctl help lists the commands, deployctl -h explains the flags"))
  if (command === "help") return Either.right({ _tag: "Help", command: topic })
  if (positional.length > 0) {
    const takesName = spec.commands.get(command)!.some((f) => f.name === "name")
    const guess = takesName && !given.some((g) => g.spec.name === "name") ? `; did you mean -name ${positional[0]}?` : ""
    return Either.left(usage(`unexpected argument "${positional[0]}": ${command} takes flags only${guess} (see ${hint()})`))
  }
  // Flags given before the command were looked up among every command's; they must be this one's.
  const mine = spec.commands.get(command)!
  for (const g of given) {
    if (!mine.some((f) => f.name === g.spec.name)) {
      const near = closest(g.spec.name, mine.map((f) => f.name))
      return Either.left(usage(`flag provided but not defined: -${g.spec.name} (${command})${near ? `; did you mean -${near}?` : ""} (see ${hint()})`))
    }
  }
  return Either.right({ _tag: "Run", command, globals, flags: rawFlags(given, false) })
}

/** A flag problem in deployctl's words: what was wrong and what to type. */
const problem = (p: FlagProblem, command: string | undefined, hint: () => string, known: ReadonlyArray<FlagSpec>): UsageError => {
  switch (p._tag) {
    case "BadBool":
      return usage(`invalid boolean value "${p.value}" for -${p.name}: write -${p.name} or -${p.name}=false`)
    case "NeedsValue":
      return usage(`flag needs an argument: -${p.name} (write -${p.name} VALUE)`)
    case "Unknown": {
      const near = closest(p.name, known.map((f) => f.name))
      return usage(`flag provided but not defined: -${p.name}${command ? ` (${command})` : ""}${near ? `; did you mean -${near}?` : ""} (see ${hint()})`)
    }
  }
}

/** Whether the command line asks for JSON (`-json` anywhere), so that errors are JSON too. */
export const wantsJson = (argv: ReadonlyArray<string>): boolean => {
  let json = false
  for (const a of argv) {
    if (a === "--") break
    const w = flagWord(a)
    if (w?.name === "json") json = boolValue(w.inline) === true
  }
  return json
}
