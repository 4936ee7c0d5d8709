// Untrusted text in log lines (SSH user names, commands, paths, names, key comments). A client chooses
// these strings, so printed raw they could end the line and forge another ("host key fingerprint: …"),
// or carry terminal escapes into whoever reads the log. quote() makes one token of any string: double
// quotes around it, and every control, format, separator or lone surrogate code point escaped, so one
// event is always one line and nothing in it is interpreted by a terminal.

// Cc (C0, DEL, C1 incl. U+009B CSI), Cf (bidi overrides, zero-width), Cs (lone surrogates under /u),
// Zl/Zp (U+2028/U+2029, line breaks to some readers).
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/gu

const hex = (c: string): string => {
  const n = c.codePointAt(0)!
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : n <= 0xffff ? `\\u${n.toString(16).padStart(4, "0")}` : `\\u{${n.toString(16)}}`
}

/** Escapes what must never reach a log raw, leaving the rest of the text as it is. */
export const escapeUnprintable = (s: string): string => s.replace(UNPRINTABLE, hex)

/** Longest quoted string: one client may not fill the log with one token. */
const MAX = 200

/** `"text"` with `\` and `"` escaped too, so the token is unambiguous; long strings are cut (marked with …). */
export const quote = (s: string, max = MAX): string => {
  const cut = [...s].length > max ? [...s].slice(0, max).join("") + "…" : s
  return `"${escapeUnprintable(cut.replace(/[\\"]/g, (c) => `\\${c}`))}"`
}
