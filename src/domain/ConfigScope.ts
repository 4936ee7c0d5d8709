// The `configurations="project1,web-*"` option of an agent key: the configurations that key may read.
// Grammar: a comma-separated list of entries, none empty; in an entry `*` matches any run of characters
// (also none) and `?` exactly one, everything else matches itself. An entry without wildcards must be a
// valid configuration name, and so must an entry with its wildcards taken as letters: a typo like a
// trailing comma or a `/` stops the registry rather than silently matching nothing. A configuration whose
// name contains `,`, `*` or `?` can only be reached through a wildcard.
import { configurationNameProblem } from "./Names.js"

export interface ConfigScope {
  /** The option's text as written (also keys the listings shared by sessions of the same scope). */
  readonly text: string
  readonly patterns: ReadonlyArray<string>
  readonly allows: (name: string) => boolean
}

const toRegExp = (pattern: string): RegExp =>
  new RegExp(
    "^" + [...pattern].map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\/]/g, "\\$&"))).join("") + "$",
    "su"
  )

/** The scope, or why the text is not a valid `configurations=` value. */
export const parseConfigScope = (text: string): ConfigScope | string => {
  const patterns = text.split(",")
  for (const p of patterns) {
    if (p === "") return `configurations="${text}" has an empty entry`
    const problem = configurationNameProblem(p.replace(/[*?]/g, "x"))
    if (problem !== undefined) return `configurations= entry ${JSON.stringify(p)}: ${problem}`
  }
  const res = patterns.map(toRegExp)
  return { text, patterns, allows: (name) => res.some((r) => r.test(name)) }
}
