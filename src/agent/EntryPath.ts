// TEMPORARY: the path rules until src/archive/PathRules.ts (branch `reader`) is merged; same API, so
// that the switch is an import change. Every entry path and hard link target is checked here first,
// in O(length): a 48,000-component name is refused before anything else looks at it.

/** Longest entry path or link target, in UTF-8 bytes: Linux's PATH_MAX. */
export const MAX_PATH_BYTES = 4096
/** Most components in one path: far beyond any real tree, far below what costs time. */
export const MAX_DEPTH = 1024

export interface SplitPath {
  /** Components without "" and "." (`./a//b/` → ["a", "b"]); [] is the root. */
  readonly parts: ReadonlyArray<string>
  /** The name started with "/" (stripped, as GNU tar does, with a warning). */
  readonly absolute: boolean
}

/** Splits an entry path or hard link target (`what` names it), or returns why it is refused. */
export const splitPath = (raw: string, what: string): SplitPath | string => {
  const problem = sizeProblem(raw, what)
  if (problem !== undefined) return problem
  const parts: Array<string> = []
  for (const c of raw.split("/")) {
    if (c === "" || c === ".") continue
    if (c === "..") return `${what} contains a ".." component`
    parts.push(c)
  }
  return { parts, absolute: raw.startsWith("/") }
}

/** Length and depth limits alone: what a symbolic link's target (kept verbatim) must also respect. */
export const sizeProblem = (raw: string, what: string): string | undefined => {
  if (raw.length > MAX_PATH_BYTES || (raw.length > MAX_PATH_BYTES / 3 && Buffer.byteLength(raw) > MAX_PATH_BYTES))
    return `${what} is longer than ${MAX_PATH_BYTES} bytes`
  let depth = 1
  for (let i = raw.indexOf("/"); i >= 0; i = raw.indexOf("/", i + 1)) depth++
  if (depth > MAX_DEPTH) return `${what} has more than ${MAX_DEPTH} components`
  return undefined
}
