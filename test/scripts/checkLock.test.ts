// scripts/check-lock.mjs (run by .ci/run): the flake's importNpmLock needs a download URL and a hash
// for every lock entry, so a lock without them must fail CI.
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot } from "../support/registry.js"

const run = promisify(execFile)
const script = path.join(repoRoot, "scripts/check-lock.mjs")
const lock = JSON.parse(readFileSync(path.join(repoRoot, "package-lock.json"), "utf8"))

const check = async (file: string) => {
  try {
    const { stdout, stderr } = await run(process.execPath, [script, file])
    return { code: 0, out: stdout + stderr }
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string }
    return { code: err.code, out: err.stdout + err.stderr }
  }
}

describe("check-lock", () => {
  const scratch: Array<string> = []
  afterAll(async () => {
    for (const d of scratch) await rm(d, { recursive: true, force: true })
  })
  const withLock = async (edit: (packages: Record<string, Record<string, unknown>>) => void) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "check-lock-"))
    scratch.push(dir)
    const copy = structuredClone(lock)
    edit(copy.packages)
    const file = path.join(dir, "package-lock.json")
    await writeFile(file, JSON.stringify(copy))
    return file
  }

  it("passes the project's lock", async () => {
    const r = await check(path.join(repoRoot, "package-lock.json"))
    expect(r.out).toMatch(/check-lock: \d+ packages, each with an https "resolved" and an "integrity"/)
    expect(r.code).toBe(0)
  })

  it("fails a lock written with omit-lockfile-registry-resolved (no URLs), naming the entries", async () => {
    const file = await withLock((packages) => {
      for (const [k, v] of Object.entries(packages)) if (k !== "") delete v.resolved
    })
    const r = await check(file)
    expect(r.code).toBe(1)
    expect(r.out).toContain(`check-lock: ${Object.keys(lock.packages)[1]}: no "resolved"`)
    expect(r.out).toMatch(/and \d+ more/)
  })

  it("fails an entry without integrity, or with a URL that is not https", async () => {
    const file = await withLock((packages) => {
      delete packages["node_modules/tar"]!.integrity
      packages["node_modules/ssh2"]!.resolved = "http://registry.npmjs.org/ssh2/-/ssh2-1.17.0.tgz"
    })
    const r = await check(file)
    expect(r.code).toBe(1)
    expect(r.out).toContain('check-lock: node_modules/tar: no "integrity"')
    expect(r.out).toContain('check-lock: node_modules/ssh2: "resolved" is not an https URL')
    expect(r.out).toContain("2 problem(s)")
  })
})
