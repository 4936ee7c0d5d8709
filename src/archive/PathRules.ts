// The path rules every reader of a layer applies (the agent's unpacker, the registry's addver check,
// deployctl's check, deploy-from-docker): one module, so that what one door accepts no other refuses.
// Names are kept as the archive has them (control characters included, as GNU tar extracts them);
// only messages quote them (`quoteName`), so a name never reaches a log or terminal raw.

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

/**
 * Splits an entry path or hard link target (`what` names it in the reason), or returns the reason
 * it is refused: too long, too deep, a `..` component (which could climb out of the tree).
 */
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
  // UTF-16 length bounds the UTF-8 length from below: only long names pay for the exact count.
  if (raw.length > MAX_PATH_BYTES || (raw.length > MAX_PATH_BYTES / 3 && Buffer.byteLength(raw) > MAX_PATH_BYTES))
    return `${what} is longer than ${MAX_PATH_BYTES} bytes`
  let depth = 1
  for (let i = raw.indexOf("/"); i >= 0; i = raw.indexOf("/", i + 1)) depth++
  if (depth > MAX_DEPTH) return `${what} has more than ${MAX_DEPTH} components`
  return undefined
}

export { quote as quoteName } from "../domain/LogText.js"
