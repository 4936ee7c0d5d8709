// The web view in a real browser (the "A browser test"): the BUILT registry, two agents
// (-host a, -host b), `deployctl web`, and Debian's headless chromium driven by playwright-core. Each
// check of the issue is one test, in order, on the same registry and browser. Takes the screenshot;
// `WEB_SCREENSHOT=docs npx vitest run test/web/browser.test.ts` writes it to docs/web.png (else to a temp
// file, so a test run leaves the checkout as it was).
// Run `npm run build` first.
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as path from "node:path"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { tarGz } from "../agent/fixtures.js"
import { addVersion, run, currentHash } from "../agent/operator.js"
import { ctlMain } from "../ctl/harness.js"
import { type RunningAgent, spawnAgent, waitLine } from "../support/agent.js"
import { repoRoot, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"
import { COOKIE } from "../../src/web/Session.js"

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p))
const HOSTILE = `<img src=x onerror="window.__pwned=1;alert(1)">`

let reg: TestRegistry
let web: ChildProcess
let base = "" // http://127.0.0.1:PORT
let tokenUrl = ""
let browser: Browser
let context: BrowserContext
let page: Page
const agents: Array<RunningAgent> = []
const dirs: Array<string> = []
const requests: Array<string> = []
const dialogs: Array<string> = []

const agent = async (host: string, script = "exit 0") => {
  const dir = await tempDir("web-agent-")
  dirs.push(dir)
  await fs.writeFile(path.join(dir, "deploy.sh"), `#!/bin/sh\n${script}\n`, { mode: 0o755 })
  const a = spawnAgent(
    ["-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.agent.privatePath, "-name", "p1", "-dir", path.join(dir, "work"),
      "-script", path.join(dir, "deploy.sh"), "-host", host, "-poll", "1h", "-ping", "500ms", "-reconnect", "200ms"],
    dir
  )
  agents.push(a)
  return a
}

/** `deployctl web -listen 127.0.0.1:0`: resolves with its first stdout line, the URL with the token. */
const startWeb = () =>
  new Promise<string>((resolve, reject) => {
    web = spawn(process.execPath, [ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "web", "-listen", "127.0.0.1:0"], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    web.stderr!.on("data", (b: Buffer) => (err += b.toString()))
    web.stdout!.on("data", (b: Buffer) => {
      out += b.toString()
      const line = out.split("\n")
      if (line.length > 1) resolve(line[0]!)
    })
    web.once("exit", (code) => reject(new Error(`deployctl web exited ${code}:\n${out}\n${err}`)))
    setTimeout(() => reject(new Error(`deployctl web printed no URL within 20 s:\n${out}\n${err}`)), 20_000)
  })

/** A raw HTTP request (fetch cannot set Host). */
const request = (pathname: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const u = new URL(pathname, base)
    const req = http.request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: opts.method ?? "GET", headers: opts.headers ?? {} }, (res) => {
      let body = ""
      res.on("data", (b: Buffer) => (body += b.toString()))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.once("error", reject)
    req.end(opts.body ?? "")
  })

const cookieHeader = async () => (await context.cookies(base)).map((c) => `${c.name}=${c.value}`).join("; ")

const title = CHROMIUM === undefined ? "deployctl web in chromium (SKIPPED: no chromium binary at /usr/bin/chromium; apt-get install chromium)" : "deployctl web in chromium"
if (CHROMIUM === undefined) console.warn(`[browser] ${title}`)

describe.skipIf(CHROMIUM === undefined)(title, () => {
  beforeAll(async () => {
    reg = await startRegistry({ extraArgs: ["-watch-ping", "500ms"] })
    dirs.push(reg.dir)
    for (const v of ["v1", "v2", "v3", "v4"]) await addVersion(reg, "code", v, tarGz([{ path: "a", type: "file", content: v }]))
    await run(reg, "addconf -name p1 -layer code:v1")
    const [a, b] = [await agent("a"), await agent("b")]
    for (const x of [a, b]) await waitLine(x, /watching configuration/)
    tokenUrl = await startWeb()
    base = new URL(tokenUrl).origin
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: ["--no-sandbox"] })
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } })
    context.on("request", (r) => void requests.push(r.url()))
    page = await context.newPage()
    page.on("dialog", (d) => {
      dialogs.push(d.message())
      void d.dismiss()
    })
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    web?.kill("SIGINT")
    for (const a of agents) a.child.kill("SIGKILL")
    await reg?.stop("SIGKILL")
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true })
  })

  it("exchanges the one-time token for an HttpOnly SameSite=Strict cookie and drops it from the URL", async () => {
    expect(tokenUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{20,}$/)
    const res = await page.goto(tokenUrl)
    expect(res!.status()).toBe(200)
    expect(page.url()).toBe(`${base}/`)
    const cookies = await context.cookies(base)
    expect(cookies).toHaveLength(1)
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: "Strict" })
    // Once: the same token in another browser gets nothing.
    const other = await browser.newContext()
    const again = await (await other.newPage()).goto(tokenUrl)
    expect(again!.status()).toBe(401)
    await other.close()
  })

  it("the fleet page lists the configuration with 2 hosts current", async () => {
    const row = page.locator("table.fleet tbody tr", { hasText: "p1" })
    await expect.poll(() => row.locator("td.state-current").textContent(), { timeout: 10_000 }).toBe("2")
    expect(await row.locator("td").nth(3).textContent()).toBe("2")
  })

  it("a changeconf from another terminal shows on the open page without reload (time logged)", async () => {
    await page.goto(`${base}/c/p1`)
    await expect.poll(() => page.locator("#live-state").isVisible(), { timeout: 5000 }).toBe(true) // the event stream is open
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true))
    const before = await page.locator(".current-hash").textContent()
    await run(reg, "changeconf -name p1 -component code -version v2")
    const t0 = Date.now() // changeconf has returned: from here to the new hash on the page
    await expect.poll(() => page.locator(".current-hash").textContent(), { timeout: 10_000, interval: 10 }).not.toBe(before)
    const ms = Date.now() - t0
    console.log(`[browser] changeconf returned → new hash shown on the open page in ${ms} ms`)
    expect(await page.locator(".current-hash").textContent()).toBe((await currentHash(reg, "p1")).slice(0, 12))
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true)
    // the hosts follow, still without reload
    await expect.poll(() => page.locator("table.hosts .state-current").count(), { timeout: 15_000 }).toBe(2)
  })

  it("Rollback from the page changes the current state (showconf)", async () => {
    const h1Row = page.locator("table.history tbody tr").last() // the first state, code:v1
    const h1 = (await h1Row.locator("input[name=hash]").getAttribute("value"))!
    await Promise.all([page.waitForURL(/\/c\/p1\?done=rollback/), h1Row.getByRole("button", { name: "Rollback" }).click()])
    expect(await currentHash(reg, "p1")).toBe(h1)
    expect(await run(reg, "showconf -name p1")).toMatch(/code:v1|code\s+v1/)
    await expect.poll(() => page.locator(".notice-ok").textContent()).toMatch(/Rolled back/)
  })

  it("a stale Rollback (changed meanwhile) is refused with a message; with JavaScript off", async () => {
    // The same session in a browser with JavaScript off: the page is complete, and gets no live update (stale).
    const noScript = await browser.newContext({ javaScriptEnabled: false })
    await noScript.addCookies(await context.cookies(base))
    noScript.on("request", (r) => void requests.push(r.url()))
    const stale = await noScript.newPage()
    // Both hosts redeploy after the previous test's rollback: load the page once both report current
    // (without JavaScript it never updates itself).
    const current = stale.locator("a", { hasText: /^current \(2\)$/ })
    await expect.poll(async () => (await stale.goto(`${base}/c/p1`), await current.count()), { timeout: 20_000 }).toBe(1)
    expect(await stale.locator("table.hosts tbody tr").count()).toBe(2)
    expect(await stale.locator("table.history tbody tr").count()).toBe(3) // addconf, changeconf, rollback
    // the state filter is a plain link
    await Promise.all([stale.waitForURL(`${base}/c/p1?state=current#hosts`), current.click()])
    expect(await stale.locator("table.hosts tbody tr").count()).toBe(2)
    await run(reg, "changeconf -name p1 -component code -version v3")
    const h3 = await currentHash(reg, "p1")
    const res = await Promise.all([stale.waitForResponse((r) => r.request().method() === "POST"), stale.locator("table.history tbody tr").nth(1).getByRole("button", { name: "Rollback" }).click()])
    expect(res[0].status()).toBe(409)
    await expect.poll(() => stale.locator(".notice-error").textContent()).toMatch(/expect|changed|current/i)
    expect(await currentHash(reg, "p1")).toBe(h3)
    await noScript.close()
  })

  it("a host name and message with markup show as text and run nothing", async () => {
    const c = await agent(HOSTILE, `echo '${HOSTILE}' >&2; exit 1`)
    await waitLine(c, /deploy script failed/)
    await page.goto(`${base}/c/p1?state=failed`)
    await page.locator("td.host", { hasText: "onerror" }).waitFor({ timeout: 20_000 })
    expect(await page.locator("td.host", { hasText: "onerror" }).textContent()).toBe(HOSTILE)
    expect(await page.locator("td.message").first().textContent()).toContain(HOSTILE)
    expect(await page.locator("main img").count()).toBe(0)
    await page.goto(`${base}/c/p1/timeline`)
    expect(await page.locator("svg.timeline text.hostlabel title", { hasText: "onerror" }).textContent()).toBe(HOSTILE)
    expect(await page.locator("svg.timeline rect.outcome-failed").count()).toBeGreaterThan(0)
    expect(await page.locator("svg.timeline rect.outcome-deployed").count()).toBeGreaterThan(0)
    await page.goto(`${base}/c/p1`)
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined()
    expect(dialogs).toEqual([])
  })

  it("without the cookie → 401, a foreign Host → 421, a POST without the CSRF token or from another origin → 403", async () => {
    const cookie = await cookieHeader()
    expect((await request("/")).status).toBe(401)
    expect((await request("/c/p1", { headers: { cookie: `${COOKIE}=forged` } })).status).toBe(401)
    expect((await request("/", { headers: { cookie, host: `evil.example:${new URL(base).port}` } })).status).toBe(421)
    expect((await request("/", { headers: { cookie } })).status).toBe(200)
    const csrf = (await page.locator("input[name=csrf]").first().getAttribute("value"))!
    const hash = await currentHash(reg, "p1")
    const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString()
    const post = (headers: Record<string, string>, body: string) =>
      request("/c/p1/rollback", { method: "POST", headers: { cookie, "content-type": "application/x-www-form-urlencoded", ...headers }, body })
    expect((await post({ origin: base }, form({ hash, expect: hash }))).status).toBe(403)
    expect((await post({ origin: base }, form({ csrf: "x".repeat(csrf.length), hash, expect: hash }))).status).toBe(403)
    expect((await post({ origin: "http://evil.example" }, form({ csrf, hash, expect: hash }))).status).toBe(403)
    expect((await request("/c/p1/rollout/abort", { method: "POST", headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: form({ csrf }) })).status).toBe(403)
    expect(await currentHash(reg, "p1")).toBe(hash)
  })

  it("the CSP header is present and the page loads nothing from another origin; screenshot", async () => {
    const res = await page.goto(`${base}/c/p1`)
    const h = res!.headers()
    expect(h["content-security-policy"]).toMatch(/default-src 'none'/)
    expect(h["content-security-policy"]).toMatch(/script-src 'self'/)
    expect(h["content-security-policy"]).toMatch(/frame-ancestors 'none'/)
    expect(h["x-content-type-options"]).toBe("nosniff")
    expect(h["referrer-policy"]).toMatch(/^(no-referrer|same-origin)$/)
    expect(requests.length).toBeGreaterThan(5)
    expect(requests.filter((u) => !u.startsWith(`${base}/`))).toEqual([])
    const shot = process.env.WEB_SCREENSHOT === "docs" ? path.join(repoRoot, "docs/web.png") : path.join(dirs[dirs.push(await tempDir("web-shot-")) - 1]!, "web.png")
    await page.screenshot({ path: shot })
    expect((await fs.readFile(shot)).subarray(1, 4).toString()).toBe("PNG")
  })

  it("Ctrl-C stops deployctl web cleanly", async () => {
    const exited = new Promise<number | null>((r) => web.once("exit", (code) => r(code)))
    web.kill("SIGINT")
    expect([0, 130]).toContain(await exited)
  })
})

