// Session.ts's pure checks: -listen parsing, what counts as loopback, and the verdicts in order
// (Host first, then the one-time token, the cookie, the Origin of a change).
import { describe, expect, it } from "vitest"
import { authority, cookieValue, isLoopback, makeSession, parseListen } from "../../src/web/Session.js"

const req = (over: Partial<Parameters<ReturnType<typeof makeSession>["check"]>[0]> & { path?: string } = {}) => ({
  method: "GET",
  url: new URL(over.path ?? "/", "http://[::1]:8080"),
  host: "[::1]:8080",
  origin: undefined,
  cookie: undefined,
  ...over
})

describe("web session", () => {
  it("parses -listen and tells loopback addresses", () => {
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 })
    expect(parseListen("[::1]:8080")).toEqual({ host: "::1", port: 8080 })
    expect(parseListen("localhost:9")).toEqual({ host: "localhost", port: 9 })
    for (const bad of ["127.0.0.1", ":80", "::1:80", "127.0.0.1:70000", "a b:1", ""]) expect(parseListen(bad)).toBeUndefined()
    expect(["127.0.0.1", "127.1.2.3", "::1", "localhost"].every(isLoopback)).toBe(true)
    expect(["10.0.0.1", "0.0.0.0", "::", "example.com", "128.0.0.1"].some(isLoopback)).toBe(false)
    expect(authority("::1", 80)).toBe("[::1]:80")
  })

  it("checks Host before anything, spends the token once, then wants the cookie and a same-origin change", () => {
    const s = makeSession({ host: "::1", port: 8080 })
    expect(s.url).toMatch(/^http:\/\/\[::1\]:8080\/\?token=/)
    const token = new URL(s.url).searchParams.get("token")!
    expect(s.check(req({ path: `/?token=${token}`, host: "[::1]:8081" }))).toMatchObject({ status: 421 })
    expect(s.check(req({ path: `/?token=${token}`, method: "POST" }))).toMatchObject({ status: 401 })
    const ex = s.check(req({ path: `/c/x?token=${token}&state=failed` }))
    expect(ex).toMatchObject({ _tag: "Exchange", location: "/c/x?state=failed" })
    expect(s.check(req({ path: `/?token=${token}` }))).toMatchObject({ status: 401 })
    const cookie = (ex as { setCookie: string }).setCookie.split(";")[0]!
    expect(s.check(req({ cookie }))).toEqual({ _tag: "Ok" })
    expect(s.check(req({ cookie: `other=1; ${cookie}` }))).toEqual({ _tag: "Ok" })
    expect(s.check(req({ cookie: cookie.slice(0, -1) }))).toMatchObject({ status: 401 })
    expect(s.check(req({ cookie, method: "POST" }))).toMatchObject({ status: 403 })
    expect(s.check(req({ cookie, method: "POST", origin: "http://[::1]:8081" }))).toMatchObject({ status: 403 })
    expect(s.check(req({ cookie, method: "POST", origin: "http://[::1]:8080" }))).toEqual({ _tag: "Ok" })
    // A form post from our page under no-referrer: Origin null, and the browser's own Sec-Fetch-Site.
    expect(s.check(req({ cookie, method: "POST", origin: "null", fetchSite: "same-origin" }))).toEqual({ _tag: "Ok" })
    expect(s.check(req({ cookie, method: "POST", origin: "null", fetchSite: "cross-site" }))).toMatchObject({ status: 403 })
    expect(s.check(req({ cookie, method: "POST", origin: "null" }))).toMatchObject({ status: 403 })
    expect(s.check(req({ cookie, method: "POST", fetchSite: "same-origin" }))).toMatchObject({ status: 403 })
    expect(s.csrfOk(new URLSearchParams({ csrf: s.csrf }))).toBe(true)
    expect(s.csrfOk(new URLSearchParams({ csrf: "" }))).toBe(false)
    expect(s.csrfOk(new URLSearchParams())).toBe(false)
    expect(cookieValue("a=1; b = 2", "b")).toBe("2")
  })
})
