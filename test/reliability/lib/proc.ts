// Running the built programs and looking at a registry directory from the outside.
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { readdirSync, readFileSync, statSync } from "node:fs"
import * as path from "node:path"
import { repoRoot } from "../../support/registry.js"

export const distMain = (program: "registry" | "agent" | "ctl" | "docker") => path.join(repoRoot, `dist/${program}/main.js`)

export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `node <main> args…` to completion (timeout: the test's). */
export const runNode = (main: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Promise<Ran> =>
  new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : null
      resolve({ code, stdout, stderr })
    })
  })

/** `deploy-registry verify -dir D`. */
export const verifyDir = (dir: string): Promise<Ran> => runNode(distMain("registry"), ["verify", "-dir", dir])

/** Every regular file under `dir` (relative path → sha256 of its content), for before/after comparisons. */
export const snapshot = (dir: string, skip: (rel: string) => boolean = () => false): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`
      if (skip(r)) continue
      const st = statSync(path.join(dir, r))
      if (st.isDirectory()) walk(r)
      else out[r] = createHash("sha256").update(readFileSync(path.join(dir, r))).digest("hex")
    }
  }
  walk("")
  return out
}

/** Reads an integer from the environment (tests' knobs), or the default. */
export const envInt = (name: string, def: number): number => {
  const v = process.env[name]
  if (v === undefined || v === "") return def
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, got ${JSON.stringify(v)}`)
  return n
}

/**
 * Wall-clock budget of one crash loop, in ms (0: no limit, the loop runs all its rounds). CI runs a short
 * budget (8 s, also the default when unset); `npm run test:reliability` gives each loop minutes.
 */
export const loopBudgetMs = (): number => envInt("RELIABILITY_BUDGET_S", 8) * 1000

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `cond` every `every` ms until it holds or `timeoutMs` passes; returns whether it held. */
export const waitFor = async (cond: () => boolean | Promise<boolean>, timeoutMs: number, every = 50): Promise<boolean> => {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return true
    if (Date.now() > end) return false
    await sleep(every)
  }
}

/**
 * Starts the registry on `dir` and `port` exactly as test/support/registry.ts does, without waiting for it:
 * for killing it in the middle of its start (migrations, upload sweep, retention).
 */
export const spawnRegistry = (dir: string, port: number, extra: ReadonlyArray<string>): ChildProcess => {
  const child = spawn(process.execPath, [distMain("registry"), "-addr", `127.0.0.1:${port}`, "-dir", dir,
    "-opauth", path.join(dir, "operator.keys"), "-srvauth", path.join(dir, "service.keys"), ...extra], { stdio: ["ignore", "pipe", "pipe"] })
  child.stdout!.resume()
  child.stderr!.resume()
  return child
}

/** SIGKILLs a child and waits for it to be gone. */
export const killNow = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })
