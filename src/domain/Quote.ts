// Quoting untrusted names (archive entries, paths) for messages and logs.

/** Characters of a name shown in a message before it is cut. */
const QUOTE_MAX = 200

// Cc (C0, DEL, C1), Cf (bidi overrides, zero-width and other format characters), lone surrogates,
// line/paragraph separators: escaped, so one message is one line and shows what the name really holds.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}"\\]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/gu

const escape = (c: string): string =>
  c === '"' ? '\\"'
  : c === "\\" ? "\\\\"
  : c === "\n" ? "\\n"
  : c === "\t" ? "\\t"
  : c === "\r" ? "\\r"
  : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`

/**
 * A name as a double-quoted, single-line, terminal-safe string: JSON's quoting for ordinary names,
 * control and format characters escaped, cut after 200 characters (`…` marks the cut).
 */
export const quoteName = (name: string): string => {
  const points = [...name.slice(0, QUOTE_MAX * 2 + 2)]
  const cut = points.length > QUOTE_MAX
  const shown = cut ? points.slice(0, QUOTE_MAX).join("") : name
  return `"${shown.replace(UNSAFE, escape)}${cut ? "…" : ""}"`
}
