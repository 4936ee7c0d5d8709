// deployctl's configuration file: named registries, so `deployctl -r prod showconf -name x` needs no
// -addr/-fp/-key. `$XDG_CONFIG_HOME/deploy-tools/deployctl.toml` (default ~/.config/…). A small
// subset of TOML, parsed here (no dependency): comments, `[registry.NAME]` tables, `key = "string"`
// (basic or 'literal'), and a top-level `default = "NAME"`. Every problem names file and line.
//
//   default = "prod"
//   [registry.prod]
//   addr = "reg.example.com:2022"
//   fingerprint = "SHA256:…"
//   key = "~/.ssh/deploy_ed25519"
import { Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "../domain/Errors.js"

export interface RegistryEntry {
  readonly addr?: string
  readonly fingerprint?: string
  readonly key?: string
}

export interface CtlConfig {
  readonly default: string | undefined
  readonly registries: ReadonlyMap<string, RegistryEntry>
}

export const emptyConfig: CtlConfig = { default: undefined, registries: new Map() }

/** Where deployctl looks for its file. */
export const configPath = (env: { readonly xdgConfigHome?: string | undefined; readonly home: string }): string =>
  path.join(env.xdgConfigHome ? env.xdgConfigHome : path.join(env.home, ".config"), "deploy-tools", "deployctl.toml")

const entryKeys = ["addr", "fingerprint", "key"] as const

/** A TOML string value: "basic" (with \\ \" \n \t \uXXXX escapes) or 'literal'; undefined when malformed. */
const stringValue = (text: string): string | undefined => {
  const lit = /^'([^']*)'$/.exec(text)
  if (lit) return lit[1]
  const basic = /^"((?:[^"\\]|\\.)*)"$/.exec(text)
  if (!basic) return undefined
  let bad = false
  const out = basic[1]!.replace(/\\(u[0-9a-fA-F]{4}|.)/g, (_, e: string) => {
    if (e.startsWith("u") && e.length === 5) return String.fromCharCode(parseInt(e.slice(1), 16))
    const m: Record<string, string> = { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\" }
    if (m[e] === undefined) bad = true
    return m[e] ?? ""
  })
  return bad ? undefined : out
}

/** Strips a comment that is not inside a string. */
const withoutComment = (line: string): string => {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') i++
      else if (c === quote) quote = undefined
    } else if (c === '"' || c === "'") quote = c
    else if (c === "#") return line.slice(0, i)
  }
  return line
}

/** Parses the file's text; `file` is only for messages. */
export const parseConfig = (file: string, text: string): Either.Either<CtlConfig, UsageError> => {
  const registries = new Map<string, Record<string, string>>()
  let def: string | undefined
  let table: Record<string, string> | undefined // undefined: top level
  const lines = text.split(/\r?\n/)
  for (let n = 1; n <= lines.length; n++) {
    const line = withoutComment(lines[n - 1]!).trim()
    const fail = (what: string) => Either.left(new UsageError({ message: `${file}:${n}: ${what}` }))
    if (line === "") continue
    if (line.startsWith("[")) {
      const m = /^\[\s*registry\.(?:([A-Za-z0-9_-]+)|"([^"\\]+)")\s*\]$/.exec(line)
      if (!m) return fail(`expected a table [registry.NAME], got ${JSON.stringify(line)}`)
      const name = m[1] ?? m[2]!
      if (registries.has(name)) return fail(`registry "${name}" is defined twice`)
      table = {}
      registries.set(name, table)
      continue
    }
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.*)$/.exec(line)
    if (!kv) return fail(`expected key = "value", got ${JSON.stringify(line)}`)
    const [, key, raw] = kv as unknown as [string, string, string]
    const value = stringValue(raw.trim())
    if (value === undefined) return fail(`the value of ${key} should be a string in double quotes, got ${raw.trim()}`)
    if (table === undefined) {
      if (key !== "default") return fail(`unknown setting "${key}" at the top (only default = "NAME"; registries go in [registry.NAME])`)
      def = value
    } else {
      if (!(entryKeys as ReadonlyArray<string>).includes(key)) return fail(`unknown key "${key}" (a registry has ${entryKeys.join(", ")})`)
      if (key in table) return fail(`${key} is set twice`)
      // A relative key file is relative to this file's directory, not to wherever deployctl runs.
      table[key] = key === "key" && !value.startsWith("~") && !path.isAbsolute(value) ? path.resolve(path.dirname(file), value) : value
    }
  }
  if (def !== undefined && !registries.has(def)) {
    return Either.left(new UsageError({ message: `${file}: default = "${def}" names no [registry.${def}] table` }))
  }
  return Either.right({ default: def, registries })
}

/** Reads and parses the file; a missing file is an empty configuration. */
export const loadConfig = (file: string): Either.Either<CtlConfig, UsageError> => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return Either.right(emptyConfig)
    return Either.left(new UsageError({ message: `${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }))
  }
  return parseConfig(file, text)
}

export interface Sources {
  /** -addr, -fp, -key and -r as given on the command line. */
  readonly flags: ReadonlyMap<string, string>
  readonly env: { readonly addr?: string | undefined; readonly fp?: string | undefined; readonly key?: string | undefined }
  readonly file: string
  readonly config: CtlConfig
}

export interface Resolved {
  readonly addr: string | undefined
  readonly fp: string | undefined
  readonly key: string | undefined
}

/**
 * Each of address, fingerprint and key from the first that has it: the flag (-addr, -fp, -key), the
 * registry named by -r, the environment (DEPLOYCTL_ADDR, DEPLOYCTL_FINGERPRINT, DEPLOYCTL_KEY), the
 * file's default registry.
 */
export const resolveGlobals = (s: Sources): Either.Either<Resolved, UsageError> => {
  const chosen = s.flags.get("r")
  let named: RegistryEntry = {}
  if (chosen !== undefined) {
    const entry = s.config.registries.get(chosen)
    if (entry === undefined) {
      const known = [...s.config.registries.keys()]
      return Either.left(
        new UsageError({
          message: `-r ${chosen}: no [registry.${chosen}] in ${s.file}${known.length > 0 ? ` (it has ${known.join(", ")})` : " (add one: see docs/deployctl.md)"}`
        })
      )
    }
    named = entry
  }
  const fallback = s.config.default === undefined ? {} : (s.config.registries.get(s.config.default) ?? {})
  const pick = (flag: string, entry: keyof RegistryEntry, env: string | undefined) =>
    s.flags.get(flag) ?? named[entry] ?? (env === "" ? undefined : env) ?? fallback[entry]
  return Either.right({ addr: pick("addr", "addr", s.env.addr), fp: pick("fp", "fingerprint", s.env.fp), key: pick("key", "key", s.env.key) })
}
