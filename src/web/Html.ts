// HTML building for the web view's pages. `html` is a tagged template that escapes every interpolated
// value; markup passes through only as an `Html` value (from `html` itself or the explicit `raw`
// marker). Host names, messages and component names come from agent and operator keys, so nothing
// else may become markup: there is no way to interpolate a string unescaped by accident.

/** Markup that is already safe: made by `html` or, explicitly, by `raw`. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text
  }
}

const entities: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }

/** Text made safe for element content and quoted attribute values. */
export const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => entities[c]!)

/** Trusted markup (constants of our own, never data). The explicit marker is the point: grep for it. */
export const raw = (s: string): Html => new Html(s)

/**
 * Interpolations: `Html` as is; strings and numbers escaped; arrays element by element;
 * `undefined`, `null` and `false` as nothing (for `${cond && html`…`}`).
 */
export type Part = Html | string | number | boolean | null | undefined | ReadonlyArray<Part>

const append = (out: Array<string>, v: Part): void => {
  if (v === undefined || v === null || v === false || v === true) return
  if (v instanceof Html) out.push(v.text)
  else if (typeof v === "string") out.push(escape(v))
  else if (typeof v === "number") out.push(String(v))
  else for (const x of v) append(out, x)
}

export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<Part>): Html => {
  const out: Array<string> = [strings[0]!]
  values.forEach((v, i) => {
    append(out, v)
    out.push(strings[i + 1]!)
  })
  return new Html(out.join(""))
}

/** A path under this server with each segment percent-encoded (`path("c", name)` → `/c/<name>`). */
export const path = (...segments: ReadonlyArray<string>): string => `/${segments.map(encodeURIComponent).join("/")}`

/** `?a=1&b=2` of the given parameters (empty ones left out), or "" when none is left. */
export const queryString = (params: Record<string, string | number | undefined>): string => {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v))
  const s = q.toString()
  return s === "" ? "" : `?${s}`
}
