import { execFileSync } from "node:child_process"
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cacheDir } from "../../src/launch/CodeCache.js"
import { tempDir } from "../support/keys.js"
import { repoRoot } from "../support/registry.js"

// A CommonJS "bundle" that records each run on a global, so the test sees that it ran.
const bundle = async () => {
  const dir = await tempDir("codecache-")
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
const loadBundle = (file: string, cache: string): { usedCache: boolean; ran: number } =>
  JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", child, file, cache], { encoding: "utf8" }))

describe("loadBundle", () => {
  it("compiles and runs the bundle the first time, writes the cache, and uses it the next time", async () => {
    const { dir, file } = await bundle()
    const cache = path.join(dir, "cache")
    expect(loadBundle(file, cache)).toEqual({ usedCache: false, ran: 6 })
    expect(readdirSync(cache).filter((n) => n.endsWith(".v8cache"))).toHaveLength(1)
    expect(loadBundle(file, cache)).toEqual({ usedCache: true, ran: 6 })
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
})

describe("cacheDir", () => {
  it("prefers DEPLOY_TOOLS_CACHE, then XDG_CACHE_HOME, then ~/.cache", () => {
    expect(cacheDir({ DEPLOY_TOOLS_CACHE: "/c", XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/c")
    expect(cacheDir({ XDG_CACHE_HOME: "/x", HOME: "/h" })).toBe("/x/deploy-tools")
    expect(cacheDir({ HOME: "/h" })).toBe("/h/.cache/deploy-tools")
  })
})
