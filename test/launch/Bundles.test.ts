// What the built bundles (scripts/postbuild.mjs) leave out of a start: effect's index (a wrapped index ran every
// effect module and fast-check), and the Node modules only some commands need (ssh2's HTTP agents loaded http,
// https and tls; deployctl's platform services child_process and readline). Needs `npm run build` first.
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { tempDir } from "../support/keys.js"
import { repoRoot } from "../support/registry.js"

const bundles = (readdirSync(path.join(repoRoot, "dist"), { recursive: true }) as Array<string>).filter((f) => /\.bundle\.cjs$|\.worker\.cjs$/.test(f))

/** The Node built-in modules a built program loaded by the time it exited, run with `args`. */
const builtinsLoaded = async (program: string, args: ReadonlyArray<string>): Promise<ReadonlySet<string>> => {
  const dir = await tempDir("bundles-")
  const out = path.join(dir, "modules.json")
  const hook = path.join(dir, "hook.cjs")
  writeFileSync(hook, `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.moduleLoadList)))\n`)
  let list: Array<string>
  try {
    execFileSync(process.execPath, ["-r", hook, path.join(repoRoot, "dist", program, "main.js"), ...args], { stdio: "ignore" })
    list = JSON.parse(readFileSync(out, "utf8")) as Array<string>
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return new Set(list.filter((m) => m.startsWith("NativeModule ")).map((m) => m.slice("NativeModule ".length)))
}

describe("the built bundles", () => {
  it("import effect's modules directly, never its index", () => {
    expect(bundles.length).toBeGreaterThanOrEqual(5)
    for (const b of bundles) expect(readFileSync(path.join(repoRoot, "dist", b), "utf8"), b).not.toMatch(/\/\/ \S*node_modules\/effect\/dist\/esm\/index\.js/)
  })

  it("are ASCII, so a start reads each as Latin-1 instead of decoding UTF-8 (one non-ASCII comment made the whole source two-byte)", () => {
    for (const b of bundles) expect(readFileSync(path.join(repoRoot, "dist", b)).toString("latin1"), b).not.toMatch(/[^\x00-\x7f]/)
  })

  it.each([
    ["ctl", ["--version"], ["http", "https", "tls", "child_process", "readline"]],
    ["registry", ["--version"], ["http", "https", "tls", "child_process", "readline"]],
    ["docker", ["-version"], ["http", "https", "tls", "child_process", "readline"]]
  ] as const)("%s %s loads none of %s", async (program, args, unwanted) => {
    const loaded = await builtinsLoaded(program, args)
    expect(loaded.has("net"), "the probe sees what a start loads").toBe(true)
    expect(unwanted.filter((m) => loaded.has(m))).toEqual([])
  })
})
