// scripts/ensure.mjs on a fresh clone: says what it does before each long step and lets npm show
// its own progress (the first `npm run registry` was silent for minutes). npm is a stand-in here
// that records how it was called.
import { execFile } from "node:child_process"
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, expect, it } from "vitest"
import { repoRoot } from "./support/registry.js"

const run = promisify(execFile)
const dirs: Array<string> = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

it("announces the install and the build, and runs npm with its progress visible", async () => {
  const clone = await mkdtemp(path.join(os.tmpdir(), "ensure-"))
  dirs.push(clone)
  await mkdir(path.join(clone, "src"))
  await writeFile(path.join(clone, "src", "a.ts"), "export {}\n")
  await writeFile(path.join(clone, "package.json"), "{}\n")
  await writeFile(path.join(clone, "tsconfig.json"), "{}\n")
  const bin = path.join(clone, "fakebin")
  await mkdir(bin)
  await writeFile(path.join(bin, "npm"), `#!/bin/sh\necho "$*" >> "${clone}/npm-calls"\n`)
  await chmod(path.join(bin, "npm"), 0o755)
  const r = await run(process.execPath, [path.join(repoRoot, "scripts/ensure.mjs")], {
    cwd: clone,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }
  })
  expect(r.stderr).toMatch(/^\[setup\] first run: installing dependencies and compiling the native .* npm's progress follows\)$/m)
  expect(r.stderr).toMatch(/^\[setup\] installing dependencies: done in \d+ s$/m)
  expect(r.stderr).toMatch(/^\[setup\] compiling src\/ into dist\/ .*: npm run -s build$/m)
  const calls = (await readFile(path.join(clone, "npm-calls"), "utf8")).trim().split("\n")
  expect(calls[0]).toContain("ci")
  expect(calls[0]).toContain("--foreground-scripts") // the native builds' output is shown, not hidden
  expect(calls[1]).toBe("run -s build")
})
