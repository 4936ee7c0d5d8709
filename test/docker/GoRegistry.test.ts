// The built deploy-from-docker against a registry that answers like the original Go one: no `-json`
// (Go's flag package: "flag provided but not defined: -json" plus usage, exit 1), plain tables
// from tabwriter, an unknown component's showcomp empty with exit 0. The server is the in-process
// fake SSH server of test/ssh with a Go-like console behind its exec requests; uploads go to its
// SFTP side, and addver accepts only the sha256 of a completed upload, as the Go registry does.
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Either } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { split } from "../../src/domain/ShellWords.js"
import { fingerprint } from "../../src/ssh/Fingerprint.js"
import { makeKey, tempDir } from "../support/keys.js"
import { repoRoot } from "../support/registry.js"
import { type FakeServer, startFakeServer } from "../ssh/fakeServer.js"
import { classicSave, dir, file, tarOf } from "./fixtures.js"

const main = path.join(repoRoot, "dist/docker/main.js")
const FLAGS: Record<string, ReadonlyArray<string>> = {
  showcomp: ["name"],
  showconf: ["name", "v"],
  addver: ["name", "version", "hash"],
  addconf: ["name", "layer"],
  replaceconf: ["name", "layer"]
}

/** The Go registry's console, as far as deploy-from-docker uses it. */
class GoConsole {
  versions = new Map<string, Array<string>>()
  confs = new Map<string, Array<string>>()
  changes: Array<string> = []
  private clock = Date.parse("2026-12-01T11:21:40Z")
  private ctimes = new Map<string, string>()
  constructor(private readonly uploaded: () => ReadonlyArray<string>) {}

  exec(command: string): { output: string; code: number } {
    const [verb = "", ...args] = Either.getOrThrow(split(command))
    const known = FLAGS[verb]
    if (known === undefined) return { output: "Unknown command, supported commands are:\n...\n", code: 1 }
    const flags = new Map<string, Array<string>>()
    for (const a of args) {
      const [k = "", v = "true"] = a.replace(/^--?/, "").split(/=(.*)/s)
      if (!known.includes(k)) {
        const usage = known.map((f) => `  -${f} string\n    \t${f}\n`).join("")
        return { output: `flag provided but not defined: -${k}\nUsage of ${verb}:\n${usage}`, code: 1 }
      }
      flags.set(k, [...(flags.get(k) ?? []), v])
    }
    const name = flags.get("name")?.[0] ?? ""
    const fail = (output: string) => ({ output: `${output}\n`, code: 1 })
    const table = (rows: Array<Array<string>>) => {
      const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)) + 3) ?? []
      return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("") + "\n").join("")
    }
    switch (verb) {
      case "showcomp": // unknown component: nothing, exit 0 (fault 6 of the original)
        return { output: table((this.versions.get(name) ?? []).map((v) => [this.ctimes.get(`${name}:${v}`)!, v])), code: 0 }
      case "showconf": {
        const layers = this.confs.get(name)
        if (layers === undefined) return fail(`configuration "${name}" not found`)
        return { output: table(layers.map((l) => [...l.split(":"), this.ctimes.get(l)!])), code: 0 }
      }
      case "addver": {
        const [version = "", hash = ""] = [flags.get("version")?.[0], flags.get("hash")?.[0]]
        if (!this.uploaded().includes(hash)) return fail("no uploaded file with given hash found")
        const vs = this.versions.get(name) ?? []
        if (vs.includes(version)) return fail(`version "${version}" already exists`)
        this.versions.set(name, [...vs, version])
        this.ctimes.set(`${name}:${version}`, new Date((this.clock += 1000)).toISOString().replace(/\.\d+Z$/, "Z"))
        this.changes.push(`addver ${name} ${version}`)
        return { output: "", code: 0 }
      }
      default: {
        const layers = flags.get("layer") ?? []
        for (const l of layers) if (!this.ctimes.has(l)) return fail(`no version "${l.split(":")[1]}" for component "${l.split(":")[0]}" found`)
        this.confs.set(name, layers)
        this.changes.push(`${verb} ${name}`)
        return { output: "", code: 0 }
      }
    }
  }
}

let server: FakeServer
let go: GoConsole
let work: string
let key: string
beforeAll(async () => {
  go = new GoConsole(() => server.files.filter((f) => f.closed).map((f) => f.sha256))
  server = await startFakeServer({ exec: (c) => go.exec(c) })
  work = await tempDir("dfd-go-")
  key = (await makeKey(work, "op")).privatePath
})
afterAll(async () => {
  await server?.stop()
  if (work) await fs.rm(work, { recursive: true, force: true })
})

const dfd = (archive: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const args = ["-addr", `127.0.0.1:${server.port}`, "-fp", fingerprint(server.hostKeyBlob), "-key", key]
    const child = spawn(process.execPath, [main, ...args], { env: { PATH: process.env.PATH, HOME: work, DEPLOY_TOOLS_CACHE: process.env.DEPLOY_TOOLS_CACHE }, stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
    child.stdin.on("error", () => {})
    child.once("error", reject)
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(archive)
  })

const base = tarOf([dir("etc"), file("etc/a", "a\n")])
const v1 = tarOf([file("app", "v1\n")])
const v2 = tarOf([file("app", "v2\n")])

describe("deploy-from-docker against a registry that answers like the Go one", () => {
  it("falls back to the plain showcomp/showconf output: uploads, adds the versions, creates the configuration", async () => {
    const r = await dfd(classicSave({ ref: "demo/app:1", layers: [base, v1] }))
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/configuration demo\.app\.1 created: demo\.app\.1\.l1:\S+ demo\.app\.1\.l2:\S+\n$/)
    expect(go.changes).toEqual([expect.stringMatching(/^addver demo\.app\.1\.l1 /), expect.stringMatching(/^addver demo\.app\.1\.l2 /), "addconf demo.app.1"])
    // -json was tried once, then the plain commands only.
    expect(server.commands.filter((c) => c.includes("-json"))).toHaveLength(1)
  })

  it("re-importing reads the versions and layers from the plain tables: nothing uploaded or changed", async () => {
    const uploads = server.files.length
    const changes = go.changes.length
    const r = await dfd(classicSave({ ref: "demo/app:1", layers: [base, v1] }))
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("already in the registry")
    expect(r.stdout).toMatch(/configuration demo\.app\.1 unchanged/)
    expect(server.files.length).toBe(uploads)
    expect(go.changes.length).toBe(changes)
  })

  it("a changed image uploads the changed layer and replaces the configuration's layers", async () => {
    const r = await dfd(classicSave({ ref: "demo/app:1", layers: [base, v2] }))
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/configuration demo\.app\.1 updated/)
    expect(go.changes.slice(-2)).toEqual([expect.stringMatching(/^addver demo\.app\.1\.l2 /), "replaceconf demo.app.1"])
  })
})
