// Starts the BUILT `deployctl web` (`npm run build` first) against a test registry, and speaks plain
// HTTP to it with full control over Host, Origin and Cookie (node:http; fetch would fix Host itself).
// Shared by the server tests and the browser test.
import { type ChildProcess, spawn } from "node:child_process"
import { rm } from "node:fs/promises"
import * as http from "node:http"
import * as path from "node:path"
import { repoRoot, type TestRegistry } from "../support/registry.js"
import { tempDir } from "../support/keys.js"

export const ctlMain = path.join(repoRoot, "dist/ctl/main.js")

export interface RunningWeb {
  /** The first stdout line: http://127.0.0.1:PORT/?token=… */
  url: string
  /** http://127.0.0.1:PORT */
  origin: string
  /** 127.0.0.1:PORT, what Host must be */
  host: string
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Sends the signal (SIGINT by default); resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL")
})

/** `deployctl -addr … -fp … -key <operator> web [...extra]`; resolves once the URL is printed. */
export const startWeb = async (reg: TestRegistry, extra: ReadonlyArray<string> = []): Promise<RunningWeb> => {
  const home = await tempDir("deployctl-web-home-")
  const child = spawn(process.execPath, [ctlMain, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, "web", ...extra], {
    env: { PATH: process.env.PATH ?? "", HOME: home, USER: "operator" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  live.add(child)
  let out = ""
  let err = ""
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => {
    live.delete(child)
    // Its HOME goes with it (known_hosts and the like: nothing a test reads after the exit).
    void rm(home, { recursive: true, force: true }).finally(() => resolve(code ?? (signal === null ? null : 128)))
  }))
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()))
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`deployctl web printed no URL within 20 s:\n${out}${err}`)), 20_000)
    const check = () => {
      const nl = out.indexOf("\n")
      if (nl >= 0) {
        clearTimeout(timer)
        resolve(out.slice(0, nl))
      }
    }
    child.stdout!.on("data", check)
    void exited.then((code) => reject(new Error(`deployctl web exited (${code}):\n${out}${err}`)))
  })
  const u = new URL(url)
  return {
    url,
    origin: u.origin,
    host: u.host,
    child,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = "SIGINT") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
}

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** One HTTP request to `web` with exactly these headers (Host defaults to the listen address). */
export const request = (
  web: RunningWeb,
  method: string,
  pathAndQuery: string,
  opts: { headers?: Record<string, string>; body?: string } = {}
): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const u = new URL(web.origin)
    const req = http.request(
      { host: u.hostname, port: Number(u.port), method, path: pathAndQuery, headers: { host: web.host, ...opts.headers }, setHost: false },
      (res) => {
        let body = ""
        res.on("data", (b: Buffer) => (body += b.toString()))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      }
    )
    req.on("error", reject)
    req.end(opts.body)
  })

/** Spends the URL's token: the session cookie ("name=value") the server set. */
export const login = async (web: RunningWeb): Promise<string> => {
  const u = new URL(web.url)
  const r = await request(web, "GET", `${u.pathname}${u.search}`)
  if (r.status !== 303) throw new Error(`token exchange answered ${r.status}: ${r.body}`)
  return String(r.headers["set-cookie"]![0]!.split(";")[0])
}

/** A form POST from the page (cookie, same Origin) unless `headers` say otherwise. */
export const post = (web: RunningWeb, cookie: string, pathname: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  request(web, "POST", pathname, {
    headers: { cookie, origin: web.origin, "content-type": "application/x-www-form-urlencoded", ...headers },
    body: new URLSearchParams(form).toString()
  })

/** The CSRF token the page's forms carry. */
export const csrfOf = (page: string): string => /name="csrf" value="([^"]+)"/.exec(page)![1]!
