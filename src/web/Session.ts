// The web view's security model (docs/web.md), as pure checks on a request:
// - DNS rebinding: the Host header must be the listen address exactly (else 421).
// - One-time token: the first URL carries ?token=…; it is exchanged once for an HttpOnly SameSite=Strict
//   session cookie and the browser is sent to the same URL without it. No valid cookie: 401.
// - CSRF: every state change is a POST with the session's CSRF token (a form field) and an Origin that is
//   our own (else 403). GET never changes anything. Under `Referrer-Policy: no-referrer` browsers send
//   `Origin: null` with a form POST even from our own page; that one is taken as ours only together with
//   `Sec-Fetch-Site: same-origin`, which the browser sets and no page can.
// Secrets are random 32 bytes, compared in constant time.
import { randomBytes, timingSafeEqual } from "node:crypto"
import * as net from "node:net"

export const COOKIE = "deployctl_web"

/** The headers every answer carries. `style-src` without 'unsafe-inline': pages use classes only. */
export const securityHeaders: Readonly<Record<string, string>> = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store"
}

const secret = () => randomBytes(32).toString("base64url")

const same = (a: string, b: string) => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** `host:port` as a browser writes it in Host and Origin (IPv6 in brackets). */
export const authority = (host: string, port: number) => `${net.isIPv6(host) ? `[${host}]` : host}:${port}`

export const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || (net.isIPv4(host) && host.startsWith("127."))

/** `-listen host:port` (port 0: any free one); undefined when malformed. */
export const parseListen = (s: string): { readonly host: string; readonly port: number } | undefined => {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim())
  if (!m) return undefined
  const host = m[1] ?? m[2]!
  const port = Number(m[3])
  return port <= 65535 && (net.isIP(host) !== 0 || /^[A-Za-z0-9.-]+$/.test(host)) ? { host, port } : undefined
}

export const cookieValue = (header: string | undefined, name: string): string | undefined => {
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=")
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim()
  }
  return undefined
}

export type Verdict =
  | { readonly _tag: "Ok" }
  | { readonly _tag: "Exchange"; readonly setCookie: string; readonly location: string }
  | { readonly _tag: "Refused"; readonly status: 401 | 403 | 421; readonly reason: string }

export interface Request {
  readonly method: string
  readonly url: URL
  readonly host: string | undefined
  readonly origin: string | undefined
  /** The browser's Sec-Fetch-Site header. */
  readonly fetchSite?: string | undefined
  readonly cookie: string | undefined
}

/** One web view's secrets: the token (spent once), the session cookie and the CSRF token. */
export const makeSession = (listen: { readonly host: string; readonly port: number }) => {
  const token = secret()
  const session = secret()
  const csrf = secret()
  let spent = false
  const self = authority(listen.host, listen.port)
  const origin = `http://${self}`

  /** Every request, before anything else. */
  const check = (req: Request): Verdict => {
    if (req.host !== self) return { _tag: "Refused", status: 421, reason: `this server answers only to Host ${self}` }
    const given = req.url.searchParams.get("token")
    if (given !== null) {
      if (req.method !== "GET" || spent || !same(given, token)) return { _tag: "Refused", status: 401, reason: "this link was used already or is not valid: start deployctl web again" }
      spent = true
      const rest = new URLSearchParams(req.url.searchParams)
      rest.delete("token")
      const query = rest.toString()
      return {
        _tag: "Exchange",
        setCookie: `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`,
        location: `${req.url.pathname}${query === "" ? "" : `?${query}`}`
      }
    }
    const cookie = cookieValue(req.cookie, COOKIE)
    if (cookie === undefined || !same(cookie, session)) return { _tag: "Refused", status: 401, reason: "no session: open the link deployctl web printed" }
    const sameOrigin = req.origin === origin || (req.origin === "null" && req.fetchSite === "same-origin")
    if (req.method !== "GET" && req.method !== "HEAD" && !sameOrigin) {
      return { _tag: "Refused", status: 403, reason: "a change must come from this page (Origin)" }
    }
    return { _tag: "Ok" }
  }

  /** A POST's form: its CSRF field must be the session's. */
  const csrfOk = (form: URLSearchParams) => same(form.get("csrf") ?? "", csrf)

  return { url: `${origin}/?token=${token}`, origin, csrf, check, csrfOk }
}

export type Session = ReturnType<typeof makeSession>
