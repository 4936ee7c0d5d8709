// `deployctl web` at the HTTP level (src/web/WebServer.ts, Session.ts, RegistryLink.ts), the BUILT program
// (`npm run build` first) against a real registry: the security model one rule at a time, the pages' data,
// the buttons, and the event stream fed by the registry's `events`.
import * as fs from "node:fs/promises"
import type { Client } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addVersion, run, currentHash } from "../agent/operator.js"
import { tarGz } from "../agent/fixtures.js"
import { connectClient, startRegistry, type TestRegistry } from "../support/registry.js"
import { csrfOf, login, post, request, type RunningWeb, startWeb } from "./serverProcess.js"

let reg: TestRegistry
let web: RunningWeb
let cookie: string
const clients: Array<Client> = []

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

beforeAll(async () => {
  reg = await startRegistry({ extraArgs: ["-watch-ping", "1s"] })
  await addVersion(reg, "code", "v1", tarGz([{ path: "a", type: "file", content: "1" }]))
  await addVersion(reg, "code", "v2", tarGz([{ path: "a", type: "file", content: "2" }]))
  await addVersion(reg, "code", "v3", tarGz([{ path: "a", type: "file", content: "3" }]))
  await run(reg, "addconf -name web1 -layer code:v1")
  await run(reg, "changeconf -name web1 -component code -version v2")
  web = await startWeb(reg)
}, 60_000)
afterAll(async () => {
  for (const c of clients) c.end()
  await web?.stop("SIGKILL")
  await reg?.stop()
  if (reg) await fs.rm(reg.dir, { recursive: true, force: true })
})

describe("deployctl web: security", () => {
  it("prints the URL with a one-time token first; the token becomes an HttpOnly SameSite=Strict cookie once", async () => {
    expect(web.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/)
    const token = new URL(web.url).searchParams.get("token")!
    // A foreign Host cannot spend it (DNS rebinding): 421, and the token stays valid.
    expect((await request(web, "GET", `/?token=${token}`, { headers: { host: `evil.example:${new URL(web.origin).port}` } })).status).toBe(421)
    expect((await request(web, "GET", "/?token=wrong")).status).toBe(401)
    const first = await request(web, "GET", `/?token=${token}`)
    expect(first.status).toBe(303)
    expect(first.headers.location).toBe("/")
    const setCookie = first.headers["set-cookie"]![0]!
    expect(setCookie).toMatch(/^deployctl_web=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/)
    cookie = setCookie.split(";")[0]!
    expect((await request(web, "GET", `/?token=${token}`)).status).toBe(401) // once only
  })

  it("answers 401 without the cookie, 421 for a foreign Host, and sends the CSP and friends on every answer", async () => {
    for (const p of ["/", "/c/web1", "/events", "/assets/app.css"]) expect((await request(web, "GET", p)).status).toBe(401)
    expect((await request(web, "GET", "/", { headers: { cookie: "deployctl_web=guess" } })).status).toBe(401)
    const port = new URL(web.origin).port
    for (const host of [`localhost:${port}`, `evil.example:${port}`, "127.0.0.1"]) {
      expect((await request(web, "GET", "/", { headers: { cookie, host } })).status).toBe(421)
    }
    const page = await request(web, "GET", "/", { headers: { cookie } })
    expect(page.status).toBe(200)
    for (const r of [page, await request(web, "GET", "/"), await request(web, "GET", "/nope", { headers: { cookie } })]) {
      expect(r.headers["content-security-policy"]).toBe(CSP)
      expect(r.headers["x-content-type-options"]).toBe("nosniff")
      expect(r.headers["referrer-policy"]).toBe("no-referrer")
    }
  })

  it("refuses a POST without the CSRF token, from another origin or without one (403), and changes nothing", async () => {
    const before = await currentHash(reg, "web1")
    const history = JSON.parse(await run(reg, "history -name web1 -json")) as Array<{ Hash: string }>
    const older = history[1]!.Hash
    const csrf = csrfOf((await request(web, "GET", "/c/web1", { headers: { cookie } })).body)
    const form = { csrf, hash: older, expect: before }
    expect((await post(web, cookie, "/c/web1/rollback", { hash: older, expect: before })).status).toBe(403)
    expect((await post(web, cookie, "/c/web1/rollback", { ...form, csrf: "x".repeat(43) })).status).toBe(403)
    expect((await post(web, cookie, "/c/web1/rollback", form, { origin: "http://evil.example" })).status).toBe(403)
    expect((await post(web, cookie, "/c/web1/rollback", form, { origin: "null" })).status).toBe(403)
    expect((await post(web, cookie, "/c/web1/rollback", form, { origin: "null", "sec-fetch-site": "cross-site" })).status).toBe(403)
    const noOrigin = await request(web, "POST", "/c/web1/rollback", {
      headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form).toString()
    })
    expect(noOrigin.status).toBe(403)
    expect((await post(web, "deployctl_web=guess", "/c/web1/rollback", form)).status).toBe(401)
    expect((await request(web, "GET", "/c/web1/rollback", { headers: { cookie } })).status).toBe(404) // GET changes nothing
    expect(await currentHash(reg, "web1")).toBe(before)
  })

  it("refuses a non-loopback -listen unless -listen-public is given", async () => {
    const { spawn } = await import("node:child_process")
    const { ctlMain } = await import("./serverProcess.js")
    const child = spawn(process.execPath, [ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "web", "-listen", "192.0.2.1:0"], { stdio: ["ignore", "pipe", "pipe"] })
    let err = ""
    child.stderr.on("data", (b: Buffer) => (err += b.toString()))
    const code = await new Promise<number | null>((r) => child.once("close", r))
    expect(code).toBe(2)
    expect(err).toMatch(/reachable from other machines; add -listen-public/)
  })
})

describe("deployctl web: pages, buttons and events", () => {
  it("reads the fleet, a configuration with its hosts and the timeline from the registry", async () => {
    const agent = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
    clients.push(agent)
    const h = await currentHash(reg, "web1")
    await new Promise<void>((resolve, reject) =>
      agent.exec("watch -name web1 -host '<img src=x onerror=alert(1)>' -version 0.1.0", (err, ch) => {
        if (err) return reject(err)
        ch.on("data", () => undefined)
        setInterval(() => ch.writable && ch.write('{"type":"ping"}\n'), 200).unref()
        ch.write(`${JSON.stringify({ type: "report", report: { host: "<img src=x onerror=alert(1)>", agentVersion: "0.1.0", configuration: "web1", hash: h, target: h, outcome: "deployed" } })}\n`)
        resolve()
      })
    )
    await expect.poll(async () => (await request(web, "GET", "/c/web1", { headers: { cookie } })).body, { timeout: 10_000 }).toContain("&lt;img src=x onerror=alert(1)&gt;")
    const config = await request(web, "GET", "/c/web1", { headers: { cookie } })
    expect(config.body).not.toContain("<img src=x")
    expect(config.body).toContain(h.slice(0, 12))
    const fleet = await request(web, "GET", "/", { headers: { cookie } })
    expect(fleet.body).toContain("web1")
    const fragment = await request(web, "GET", "/c/web1?fragment=1", { headers: { cookie } })
    expect(fragment.body).not.toMatch(/<html/)
    const timeline = await request(web, "GET", "/c/web1/timeline", { headers: { cookie } })
    expect(timeline.status).toBe(200)
    expect(timeline.body).toContain("<svg")
    expect((await request(web, "GET", "/c/nope", { headers: { cookie } })).status).toBe(404)
    const css = await request(web, "GET", "/assets/app.css", { headers: { cookie } })
    expect(css.status).toBe(200)
    expect(css.headers["content-type"]).toMatch(/^text\/css/)
    expect((await request(web, "GET", "/assets/app.js", { headers: { cookie } })).headers["content-type"]).toMatch(/^text\/javascript/)
    for (const p of ["/assets/..%2Fpackage.json", "/assets/%2E%2E/WebServer.js", "/assets/nope.js"]) {
      expect((await request(web, "GET", p, { headers: { cookie } })).status).toBe(404)
    }
  }, 30_000)

  it("rolls back from the page with -expect; a stale page is refused with the registry's message (409)", async () => {
    const current = await currentHash(reg, "web1")
    const history = JSON.parse(await run(reg, "history -name web1 -json")) as Array<{ Hash: string }>
    const older = history.find((s) => s.Hash !== current)!.Hash
    const page = await request(web, "GET", "/c/web1", { headers: { cookie } })
    const csrf = csrfOf(page.body)
    // Someone changes it meanwhile: the page's expect is stale.
    await run(reg, "changeconf -name web1 -component code -version v3")
    const stale = await post(web, cookie, "/c/web1/rollback", { csrf, hash: older, expect: current })
    expect(stale.status).toBe(409)
    expect(stale.body).toMatch(/not the expected/)
    const now = await currentHash(reg, "web1")
    expect(now).not.toBe(current)
    const ok = await post(web, cookie, "/c/web1/rollback", { csrf, hash: older, expect: now })
    expect(ok.status).toBe(303)
    expect(ok.headers.location).toBe("/c/web1?done=rollback")
    expect(await currentHash(reg, "web1")).toBe(older)
    const bad = await post(web, cookie, "/c/web1/rollback", { csrf, hash: "zz", expect: now })
    expect(bad.status).toBe(400)
  }, 30_000)

  it("streams the registry's events to every tab as server-sent events", async () => {
    const http = await import("node:http")
    const u = new URL(web.origin)
    const tab = () =>
      new Promise<{ data: () => string; close: () => void; headers: Record<string, unknown> }>((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: Number(u.port), path: "/events", headers: { cookie, host: web.host }, setHost: false }, (res) => {
          let data = ""
          res.on("data", (b: Buffer) => (data += b.toString()))
          resolve({ data: () => data, close: () => req.destroy(), headers: res.headers })
        })
        req.on("error", reject)
        req.end()
      })
    const [a, b] = [await tab(), await tab()]
    expect(a.headers["content-type"]).toMatch(/^text\/event-stream/)
    // (The rollback above left it at v1.)
    await run(reg, "changeconf -name web1 -component code -version v2")
    const h = await currentHash(reg, "web1")
    for (const t of [a, b]) await expect.poll(() => t.data(), { timeout: 5_000 }).toMatch(new RegExp(`data: \\{"Event":"state","Name":"web1","Hash":"${h}"`))
    a.close()
    b.close()
  }, 30_000)

  it("pauses, resumes and aborts a rollout from the page", async () => {
    await run(reg, "rollout -name web1 -component code -version v3 -waves 1,100%")
    const phase = async () => (JSON.parse(await run(reg, "rollout -name web1 -status -json")) as { Phase: string }).Phase
    const csrf = csrfOf((await request(web, "GET", "/c/web1", { headers: { cookie } })).body)
    const fleet = async () => (await request(web, "GET", "/", { headers: { cookie } })).body
    await expect.poll(fleet, { timeout: 5_000 }).toContain("phase-running")
    for (const [step, expected] of [["pause", "paused"], ["resume", "running"], ["abort", "aborted"]] as const) {
      const r = await post(web, cookie, `/c/web1/rollout/${step}`, { csrf })
      expect(r.status).toBe(303)
      expect(await phase()).toBe(expected)
      // The fleet page's rollout column follows (its cached details are dropped by the registry's events).
      if (expected !== "aborted") await expect.poll(fleet, { timeout: 5_000 }).toContain(`phase-${expected}`)
    }
    await expect.poll(fleet, { timeout: 5_000 }).not.toContain("phase-")
    // Over: the registry refuses another step; the page says why (409).
    const again = await post(web, cookie, "/c/web1/rollout/pause", { csrf })
    expect(again.status).toBe(409)
    expect((await post(web, cookie, "/c/web1/rollout/explode", { csrf })).status).toBe(404)
  }, 30_000)

  it("stops cleanly on Ctrl-C", async () => {
    const other = await startWeb(reg)
    const code = await other.stop("SIGINT")
    expect(code).toBe(130)
    expect(other.stderr()).not.toMatch(/internal error|Error:/)
  }, 30_000)
})

describe("deployctl events", () => {
  it("prints the registry's event lines until interrupted", async () => {
    const { spawn } = await import("node:child_process")
    const { ctlMain } = await import("./serverProcess.js")
    const child = spawn(process.execPath, [ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "events"], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout.on("data", (b: Buffer) => (out += b.toString()))
    const closed = new Promise<number | null>((r) => child.once("close", r))
    try {
      // Until it is connected, changes are not its; keep changing until one shows.
      await expect.poll(async () => {
        await run(reg, "changeconf -name web1 -component code -version v3")
        await run(reg, "changeconf -name web1 -component code -version v2")
        return out
      }, { timeout: 15_000 }).toMatch(/^\{"Event":"state","Name":"web1","Hash":"[0-9a-f]{64}","Time":"[^"]+"\}$/m)
    } finally {
      child.kill("SIGINT")
    }
    expect(await closed).toBe(130)
  }, 30_000)
})

describe("deployctl web: a registry that ends its connection (-deadline)", () => {
  it("reconnects for the next page and the event stream, which tells the tabs to read again", async () => {
    const short = await startRegistry({ extraArgs: ["-deadline", "2s"] })
    // A connection of its own per operator step: the kept-open one (operator.ts) would outlive -deadline
    // and be closed under a command on a busy machine.
    const fresh = () => ({ ...short })
    try {
      await addVersion(fresh(), "code", "v1", tarGz([{ path: "a", type: "file", content: "1" }]))
      await addVersion(fresh(), "code", "v2", tarGz([{ path: "a", type: "file", content: "2" }]))
      await run(fresh(), "addconf -name d1 -layer code:v1")
      const w = await startWeb(short)
      try {
        const c = await login(w)
        const http = await import("node:http")
        const u = new URL(w.origin)
        let data = ""
        const req = http.request({ host: u.hostname, port: Number(u.port), path: "/events", headers: { cookie: c, host: w.host }, setHost: false }, (res) => {
          res.on("data", (b: Buffer) => (data += b.toString()))
        })
        req.on("error", () => undefined)
        req.end()
        await expect.poll(() => data, { timeout: 15_000 }).toContain('data: {"Event":"reconnected"}')
        expect(w.stderr()).toMatch(/events stream|reconnecting|retrying/)
        expect((await request(w, "GET", "/c/d1", { headers: { cookie: c } })).status).toBe(200)
        await run(fresh(), "changeconf -name d1 -component code -version v2")
        await expect.poll(() => data, { timeout: 10_000 }).toMatch(/data: \{"Event":"state","Name":"d1"/)
        req.destroy()
      } finally {
        await w.stop("SIGKILL")
      }
    } finally {
      await short.stop()
      await fs.rm(short.dir, { recursive: true, force: true })
    }
  }, 60_000)
})
