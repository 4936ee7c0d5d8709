import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { cacheDir } from "../../src/launch/CodeCache.js"
import { STARTED_UP } from "../../src/launch/StartedUp.js"
import { tempDir } from "../support/keys.js"
import { repoRoot } from "../support/registry.js"

/** Every temp dir this file made, removed after it. */
const made: Array<string> = []
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })))
const ownTempDir = async (prefix: string) => {
  const d = await tempDir(prefix)
  made.push(d)
  return d
}

// A CommonJS "bundle" that records each run on a global, so the test sees that it ran.
const bundle = async () => {
  const dir = await ownTempDir("codecache-")
  const file = path.join(dir, "prog", "main.bundle.cjs")
  mkdirSync(path.dirname(file))
  const body = Array.from({ length: 200 }, (_, i) => `function f${i}(x) { return x * ${i} + ${i} }`).join("\n")
  writeFileSync(file, `#!/usr/bin/env node\n${body}\nglobalThis.ran = f3(require("node:path").sep.length)\n`)
  return { dir, file }
}

// Each load in a process of its own: V8 keeps compiled scripts in memory, so a second load in the same
// process would never read the cache at all. The child imports the BUILT module (`npm run build` first):
// under tsx each child cost ~0.5 s of CPU, most of this file's.
const child = `import { loadBundle } from ${JSON.stringify(path.join(repoRoot, "dist/launch/CodeCache.js"))}
const l = loadBundle(process.argv[1], process.argv[2])
l.save()
console.log(JSON.stringify({ usedCache: l.usedCache, ran: globalThis.ran }))`
const loadBundle = (file: string, cache: string, nodeFlags: ReadonlyArray<string> = [], env: NodeJS.ProcessEnv = {}): { usedCache: boolean; ran: number | string } =>
  JSON.parse(execFileSync(process.execPath, [...nodeFlags, "--input-type=module", "-e", child, file, cache], { encoding: "utf8", env: { ...process.env, ...env } }))

describe("loadBundle", () => {
  it("compiles and runs the bundle the first time, writes the cache, and uses it the next time", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 6 })
    expect(readdirSync(cache).filter((n) => n.endsWith(".v8cache"))).toHaveLength(1)
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: 6 })
  })

  it("runs a bundle that is not ASCII with its UTF-8 text intact (built bundles are ASCII and read as Latin-1)", async () => {
    const { dir, file } = await bundle()
    writeFileSync(file, `// a comment \u2026\nglobalThis.ran = "\u2026 \u00b5s \u{1f680}"\n`)
    const cache = path.join(dir, "cache")
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: "\u2026 \u00b5s \u{1f680}" })
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: "\u2026 \u00b5s \u{1f680}" })
  })

  it("compiles as before when the cached data is corrupt, and replaces it", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    loadBundle(file, cache)
    const [name] = readdirSync(cache)
    writeFileSync(path.join(cache, name!), Buffer.alloc(4096, 7))
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 6 })
    expect(loadBundle(file, cache).usedCache).toBe(true)
  })

  it("never uses cached data from a directory others can write", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "open")
    mkdirSync(cache)
    chmodSync(cache, 0o777)
    loadBundle(file, cache)
    expect(readdirSync(cache)).toEqual([])
    expect(loadBundle(file, cache).usedCache).toBe(false)
  })

  it("keeps one cache per program: a new build replaces the old one's", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    loadBundle(file, cache)
    writeFileSync(file, "globalThis.ran = 1\n")
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 1 })
    expect(readdirSync(cache)).toHaveLength(1)
  })

  it("never runs the old code after the bundle is rewritten in place with the same length and mtime", async () => {
    // V8 checks only the source's length: a cache named by anything that survives this rewrite would run `ran = 1`.
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    // Whole seconds: utimes could not restore a finer mtime exactly.
    const t = 1_700_000_000
    writeFileSync(file, "globalThis.ran = 1\n")
    utimesSync(file, t, t)
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 1 })
    writeFileSync(file, "globalThis.ran = 2\n")
    utimesSync(file, t, t)
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 2 })
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: 2 })
  })

  it("keeps a cache per set of V8 flags: runs with and without a flag do not rewrite each other's", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    const flag = ["--stack-size=2000"]
    expect(loadBundle(file, cache, flag).usedCache).toBe(false)
    expect(loadBundle(file, cache).usedCache).toBe(false)
    expect(loadBundle(file, cache, flag)).toEqual({ usedCache: true, ran: 6 })
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: 6 })
  })

  it("saves no cache after the run changed V8's flags (a worker's --expose-gc): no new process would take it", async () => {
    const { dir, file } = await bundle()
    writeFileSync(file, `if (process.env.SET_FLAG) require("node:v8").setFlagsFromString("--expose-gc")\nglobalThis.ran = 5\n`)
    const cache = path.join(dir, "cache")
    expect(loadBundle(file, cache, [], { SET_FLAG: "1" })).toEqual({ usedCache: false, ran: 5 })
    expect(readdirSync(cache)).toEqual([])
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 5 })
    expect(loadBundle(file, cache, [], { SET_FLAG: "1" })).toEqual({ usedCache: true, ran: 5 })
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: 5 })
  })
})

// A program started as the bins start: the launcher's runBundle on a bundle beside it.
describe("runBundle", () => {
  const run = (file: string, cache: string) =>
    execFileSync(process.execPath, ["--input-type=module", "-e", `import { runBundle } from ${JSON.stringify(path.join(repoRoot, "dist/launch/CodeCache.js"))}
runBundle(${JSON.stringify(pathToFileURL(file).href)}, "main.bundle.cjs")`], { encoding: "utf8", env: { ...process.env, DEPLOY_TOOLS_CACHE: cache } })
  const caches = (cache: string) => (existsSync(cache) ? readdirSync(cache).filter((n) => n.endsWith(".v8cache")) : [])

  it("saves the cache once the program says its start-up is done (StartedUp.ts), though it is then killed (no exit handler)", async () => {
    expect(STARTED_UP).toBe(Symbol.for("deploy-tools/started-up"))
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    writeFileSync(file, `${readFileSync(file, "utf8")}
globalThis[Symbol.for("deploy-tools/started-up")]()
setTimeout(() => process.kill(process.pid, "SIGKILL"), 200)
`)
    expect(() => run(file, cache)).toThrow()
    expect(caches(cache)).toHaveLength(1)
  })

  it("saves at exit when the program never says so, and not at all when killed", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    writeFileSync(file, `${readFileSync(file, "utf8")}\nif (process.env.KILL) process.kill(process.pid, "SIGKILL")\n`)
    process.env.KILL = "1"
    try {
      expect(() => run(file, cache)).toThrow()
    } finally {
      delete process.env.KILL
    }
    expect(caches(cache)).toHaveLength(0)
    run(file, cache)
    expect(caches(cache)).toHaveLength(1)
  })
})

// A worker started as the built programs start theirs: a CommonJS launcher (as postbuild writes) that
// runs the worker bundle through the built dist/launch/CodeCache.cjs. It replies after its first run, as
// the real workers do (they reply once their work is done).
describe("runWorkerBundle", () => {
  const launcher = `require(${JSON.stringify(path.join(repoRoot, "dist/launch/CodeCache.cjs"))}).runWorkerBundle(require("node:path").join(__dirname, "w.bundle.cjs"))\n`
  // Starts the worker `n` times, one after the other, in one process; prints the last reply.
  const starter = `const { Worker } = require("node:worker_threads")
const one = () => new Promise((resolve, reject) => {
  const w = new Worker(process.argv[1])
  w.once("message", (m) => w.terminate().then(() => resolve(m)))
  w.once("error", reject)
})
;(async () => { let m; for (let i = 0; i < Number(process.argv[2]); i++) m = await one(); console.log(JSON.stringify(m)) })()`
  const startWorker = (entry: string, cache: string, n = 1): unknown =>
    JSON.parse(execFileSync(process.execPath, ["-e", starter, entry, String(n)], { encoding: "utf8", env: { ...process.env, DEPLOY_TOOLS_CACHE: cache } }))
  const writeWorker = async (run: string) => {
    const dir = await ownTempDir("codecache-worker-")
    mkdirSync(path.join(dir, "w"))
    const body = Array.from({ length: 200 }, (_, i) => `function f${i}(x) { return x * ${i} + ${i} }`).join("\n")
    writeFileSync(path.join(dir, "w", "w.bundle.cjs"), `${body}\n${run}\n`)
    writeFileSync(path.join(dir, "w", "w.cjs"), launcher)
    return { entry: path.join(dir, "w", "w.cjs"), cache: path.join(dir, "cache") }
  }
  const cacheFileOf = (cache: string) => {
    const names = readdirSync(cache)
    expect(names).toHaveLength(1)
    return { name: names[0]!, mtimeMs: statSync(path.join(cache, names[0]!)).mtimeMs }
  }

  it("runs the worker bundle, saves its cache at once (a worker ends by terminate) and uses it the next time", async () => {
    const { entry, cache } = await writeWorker(`setImmediate(() => require("node:worker_threads").parentPort.postMessage({ ran: f3(2), thread: require("node:worker_threads").threadId > 0 }))`)
    expect(startWorker(entry, cache)).toEqual({ ran: 9, thread: true })
    const saved = cacheFileOf(cache)
    expect(saved.name).toMatch(/^w-w\.bundle\.cjs-.*\.v8cache$/)
    expect(startWorker(entry, cache)).toEqual({ ran: 9, thread: true })
    // Used, so not saved again.
    expect(cacheFileOf(cache)).toEqual(saved)
  })

  it("keeps the first cache when a worker changes the V8 flags (as the archive check's scavenger does)", async () => {
    // The second worker of a process runs under --expose-gc and rejects the cache; had it rewritten it,
    // every new process would reject that one in turn.
    const { entry, cache } = await writeWorker(`require("node:v8").setFlagsFromString("--expose-gc")
require("node:worker_threads").parentPort.postMessage({ ran: f3(2) })`)
    expect(startWorker(entry, cache, 3)).toEqual({ ran: 9 })
    const saved = cacheFileOf(cache)
    expect(startWorker(entry, cache, 3)).toEqual({ ran: 9 })
    expect(cacheFileOf(cache)).toEqual(saved)
  })
})

describe("cacheDir", () => {
  it("prefers DEPLOY_TOOLS_CACHE, then XDG_CACHE_HOME, then ~/.cache", () => {
    expect(cacheDir({ DEPLOY_TOOLS_CACHE: "/c", XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/c")
    expect(cacheDir({ XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/x/deploy-tools")
    expect(cacheDir({ HOME: "/h" })).toBe("/h/.cache/deploy-tools")
  })
})
