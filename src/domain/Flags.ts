// Command-line flags in Go's `flag` style, for every program and the registry's commands: one FlagSpec
// type and one parser. `-name x`, `-name=x`, `--name x`, `--name=x`; bool flags take no value (`-v`, or
// `-v=true|false` and the other spellings of Go's strconv.ParseBool); list flags repeat and keep their
// order; `--` ends the flags. Each caller words the problems (FlagProblem) as its users know them.
import { Duration, Either } from "effect"
import { UsageError } from "./Errors.js"

/** How a flag's value is read: `bool` takes none, `list` repeats; the rest take one (checked by the caller). */
export type FlagKind = "string" | "bool" | "list" | "int" | "duration" | "size"

export interface FlagSpec {
  readonly name: string
  readonly kind: FlagKind
  readonly description: string
  /** Shown in the usage text; the caller applies it. */
  readonly default?: string
  /** Accepted but left out of the usage text (test knobs). */
  readonly hidden?: true
}

export const flag = (name: string, description: string, kind: FlagKind = "string"): FlagSpec => ({ name, kind, description })

/** A word of the command line read as a flag; undefined for a non-flag, `-` and `--`. */
export interface FlagWord {
  readonly name: string
  readonly inline: string | undefined
}

export const flagWord = (arg: string): FlagWord | undefined => {
  if (!arg.startsWith("-") || arg === "-" || arg === "--") return undefined
  const body = arg.replace(/^--?/, "")
  const eq = body.indexOf("=")
  return eq < 0 ? { name: body, inline: undefined } : { name: body.slice(0, eq), inline: body.slice(eq + 1) }
}

export const isHelp = (name: string): boolean => name === "h" || name === "help"

/** A bool flag's inline value (Go's strconv.ParseBool; none means true); undefined when it is none of them. */
export const boolValue = (inline: string | undefined): boolean | undefined => {
  if (inline === undefined) return true
  if (/^(1|t|T|TRUE|true|True)$/.test(inline)) return true
  if (/^(0|f|F|FALSE|false|False)$/.test(inline)) return false
  return undefined
}

export type FlagProblem =
  | { readonly _tag: "Unknown"; readonly name: string }
  | { readonly _tag: "NeedsValue"; readonly name: string }
  | { readonly _tag: "BadBool"; readonly name: string; readonly value: string }

/** A problem as Go's flag package words it. */
export const goMessage = (p: FlagProblem): string => {
  switch (p._tag) {
    case "Unknown":
      return `flag provided but not defined: -${p.name}`
    case "NeedsValue":
      return `flag needs an argument: -${p.name}`
    case "BadBool":
      return `invalid boolean value "${p.value}" for -${p.name}`
  }
}

export interface Given {
  readonly spec: FlagSpec
  readonly value: string | boolean
}

export interface Scanned {
  /** The flags in the order given (a bool's value is a boolean, every other a string). */
  readonly given: ReadonlyArray<Given>
  /** The words after the flags (after the first non-flag, or after `--`). */
  readonly rest: ReadonlyArray<string>
  /** Whether `-h`, `-help` or `--help` was given. */
  readonly help: boolean
}

export interface ScanOptions {
  /** The spec for a flag name at this point of the command line; undefined: not defined. */
  readonly lookup: (name: string) => FlagSpec | undefined
  /** A non-flag word: true takes it (the caller keeps it) and goes on; false ends the flags there. */
  readonly word?: (arg: string) => boolean
  /** Go stops at `-h` (deploy-registry); the command catalogue and deployctl read on, to find errors and the command. */
  readonly helpStops?: boolean
}

/** Reads flags from `args`: the one Go-style flag parser. */
export const scanFlags = (args: ReadonlyArray<string>, o: ScanOptions): Either.Either<Scanned, FlagProblem> => {
  const given: Array<Given> = []
  let help = false
  let i = 0
  for (; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      i++
      break
    }
    const w = flagWord(arg)
    if (w === undefined) {
      if (o.word?.(arg)) continue
      break
    }
    if (isHelp(w.name)) {
      help = true
      if (o.helpStops) return Either.right({ given, rest: [], help })
      continue
    }
    const spec = o.lookup(w.name)
    if (spec === undefined) return Either.left({ _tag: "Unknown", name: w.name })
    if (spec.kind === "bool") {
      const b = boolValue(w.inline)
      if (b === undefined) return Either.left({ _tag: "BadBool", name: w.name, value: w.inline! })
      given.push({ spec, value: b })
    } else if (w.inline !== undefined) given.push({ spec, value: w.inline })
    else if (i + 1 < args.length) given.push({ spec, value: args[++i]! })
    else return Either.left({ _tag: "NeedsValue", name: w.name })
  }
  return Either.right({ given, rest: args.slice(i), help })
}

/** Flags as parsed, before validation: strings (last wins), set booleans and ordered lists by flag name. */
export interface RawFlags {
  readonly strings: ReadonlyMap<string, string>
  readonly bools: ReadonlySet<string>
  readonly lists: ReadonlyMap<string, ReadonlyArray<string>>
  readonly help: boolean
}

export const rawFlags = (given: ReadonlyArray<Given>, help: boolean): RawFlags => {
  const strings = new Map<string, string>()
  const bools = new Set<string>()
  const lists = new Map<string, Array<string>>()
  for (const { spec, value } of given) {
    if (typeof value === "boolean") {
      if (value) bools.add(spec.name)
      else bools.delete(spec.name)
    } else if (spec.kind === "list") lists.set(spec.name, [...(lists.get(spec.name) ?? []), value])
    else strings.set(spec.name, value)
  }
  return { strings, bools, lists, help }
}

/**
 * Flags only, among `spec`, in Go's wording: the registry's commands, deploy-agent and deploy-from-docker.
 * A positional argument is refused (the original ignored them, fault 6).
 */
export const parseFlags = (spec: ReadonlyArray<FlagSpec>, args: ReadonlyArray<string>): Either.Either<RawFlags, UsageError> =>
  Either.mapLeft(
    Either.flatMap(
      Either.mapLeft(scanFlags(args, { lookup: (name) => spec.find((s) => s.name === name) }), goMessage),
      (s) => (s.rest.length > 0 ? Either.left(`unexpected argument "${s.rest[0]}"`) : Either.right(rawFlags(s.given, s.help)))
    ),
    (message) => new UsageError({ message })
  )

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Go's time.ParseDuration without a sign: "1h30m", "45s", "1.5h", "300ms", "0"; undefined when malformed. */
export const parseGoDuration = (s: string): Duration.Duration | undefined => {
  if (s === "0") return Duration.zero
  if (!/^(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))*$/.test(s)) return undefined
  let ms = 0
  for (const m of s.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * UNITS[m[2]!]!
  return Duration.millis(ms)
}

/** The usage line of one flag, Go style: `  -name type` then the tab-indented description. */
export const flagUsage = (f: FlagSpec, type: string, description = f.description): string =>
  `  -${f.name}${type === "" ? "" : ` ${type}`}\n    \t${description}\n`
