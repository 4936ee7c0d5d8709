// `importGoRegistry` in-process: a generated Go data directory with hundreds of versions and states
// (bolt branch, overflow, inline and paged buckets), then the failures that must leave nothing behind.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { createHash } from "node:crypto"
import { promises as fs } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { importGoRegistry } from "../../../src/registry/import/ImportDir.js"
import { BlobStoreLive } from "../../../src/registry/BlobStore.js"
import { RegistryConfig } from "../../../src/registry/RegistryConfig.js"
import { SqlLive } from "../../../src/registry/Sql.js"
import { Storage, StorageReadOnly } from "../../../src/registry/Storage.js"
import { verify } from "../../../src/registry/Verify.js"
import { generateGoRegistry, type GeneratedRegistry } from "../../support/goRegistry.js"

const scratch: Array<string> = []
afterAll(async () => {
  for (const d of scratch) await fs.rm(d, { recursive: true, force: true })
})
const tempDir = async () => {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), "go-import-"))
  scratch.push(d)
  return d
}

/** Every file under `dir` with its sha256 and mtime: the Go directory must not change. */
const snapshot = async (dir: string): Promise<Record<string, string>> => {
  const out: Record<string, string> = {}
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath, e.name)
    const s = await fs.stat(p)
    out[path.relative(dir, p)] = e.isFile() ? `${createHash("sha256").update(await fs.readFile(p)).digest("hex")} ${s.mtimeMs}` : "dir"
  }
  return out
}

const registryOf = (dir: string) =>
  Layer.mergeAll(StorageReadOnly, BlobStoreLive).pipe(Layer.provide(Layer.merge(SqlLive(dir, { readonly: true }), RegistryConfig.make(dir))))

const failure = <A, E extends { message: string }>(exit: Exit.Exit<A, E>) => {
  if (Exit.isSuccess(exit)) throw new Error("expected the import to fail")
  const e = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (e === undefined) throw new Error(`not a failure: ${exit.cause._tag}`)
  return e.message
}

describe("import of a generated Go registry", () => {
  let go: GeneratedRegistry
  let parent: string
  let before: Record<string, string>

  it("imports hundreds of versions and states; hashes, order, times and authors as expected", async () => {
    go = await generateGoRegistry(path.join(await tempDir(), "go"))
    before = await snapshot(go.dir)
    parent = await tempDir()
    const dir = path.join(parent, "registry")
    // The generated file needs every part of the format.
    expect(go.stats.branchPages).toBeGreaterThan(0)
    expect(go.stats.overflowPages).toBeGreaterThan(0)
    expect(go.stats.inlineBuckets).toBeGreaterThan(0)
    expect(go.stats.pagedBuckets).toBeGreaterThan(0)
    console.log(`generated state.db: ${go.stateDbSize} bytes, ${JSON.stringify(go.stats)}, ${go.versions.length} versions, ` +
      `${go.configurations.reduce((n, c) => n + c.states, 0)} states`)

    const summary = await Effect.runPromise(importGoRegistry(go.dir, dir))
    expect(summary).toMatchObject({ components: 43, versions: 311, configurations: 4, states: 253, ignored: [] })
    expect(summary.linked + summary.copied).toBe(311)
    expect(summary.fingerprint).toBe("SHA256:7jbi39BqrUtmzS76jCfIWuLgwJdCgtQ3JyIXSMLtg+I")
    expect((await fs.readdir(dir)).sort()).toEqual(["files", "host_key", "state.db", "uploads"])
    expect((await fs.readdir(parent)).sort()).toEqual(["registry"]) // no temp directory left

    await Effect.runPromise(
      Effect.gen(function* () {
        const report = yield* verify
        expect(report.problems).toEqual([])
        expect(report).toMatchObject({ blobs: 311, versions: 311, configurations: 4 })
        const storage = yield* Storage
        for (const c of go.configurations) {
          const current = yield* storage.current(c.name)
          expect(current.hash, c.name).toBe(c.hash)
          const history = yield* storage.history(c.name)
          expect(history.length, c.name).toBe(c.states)
          // Newest first, with the Go documents' times (to the millisecond) and the import as author.
          expect(history.map((s) => s.time.toISOString()).reverse()).toEqual(c.times.map((t) => new Date(t).toISOString()))
          expect(new Set(history.map((s) => s.who.user))).toEqual(new Set(["imported"]))
        }
        const app = yield* storage.versions("app")
        expect(app.map((v) => v.version)).toEqual(go.versions.filter((v) => v.component === "app").map((v) => v.version))
        expect(app[0]!.ctime.toISOString()).toBe(new Date(go.versions[0]!.ctime).toISOString())
        expect((yield* storage.current("big")).layers.length).toBe(40)
      }).pipe(Effect.provide(registryOf(dir)))
    )
    expect(await snapshot(go.dir)).toEqual(before)
  })

  it("refuses a second import into the same directory, and a directory that is not empty", async () => {
    const again = await Effect.runPromiseExit(importGoRegistry(go.dir, path.join(parent, "registry")))
    expect(failure(again)).toMatch(/already holds a registry/)
    const other = path.join(parent, "other")
    await fs.mkdir(other)
    await fs.writeFile(path.join(other, "notes.txt"), "mine")
    expect(failure(await Effect.runPromiseExit(importGoRegistry(go.dir, other)))).toMatch(/is not empty/)
    expect(await fs.readdir(other)).toEqual(["notes.txt"])
  })

  it("imports into an existing empty directory", async () => {
    const empty = path.join(parent, "empty")
    await fs.mkdir(empty)
    await Effect.runPromise(importGoRegistry(go.dir, empty))
    expect((await fs.readdir(empty)).sort()).toEqual(["files", "host_key", "state.db", "uploads"])
  })

  it("leaves nothing behind when a blob does not match its hash, or is missing", async () => {
    const damaged = path.join(await tempDir(), "go")
    await fs.cp(go.dir, damaged, { recursive: true })
    const victim = go.versions[200]!
    const blob = path.join(damaged, "files", victim.hash)
    await fs.writeFile(blob, "not what it was\n")
    const into = await tempDir()
    const msg = failure(await Effect.runPromiseExit(importGoRegistry(damaged, path.join(into, "registry"))))
    expect(msg).toBe(`version "${victim.version}" of component "${victim.component}": blob ${victim.hash} has content with sha256 ${createHash("sha256").update("not what it was\n").digest("hex")}`)
    expect(await fs.readdir(into)).toEqual([])
    await fs.rm(blob)
    expect(failure(await Effect.runPromiseExit(importGoRegistry(damaged, path.join(into, "registry"))))).toMatch(/cannot be read in .*: ENOENT$/)
    expect(await fs.readdir(into)).toEqual([])
  })

  it("fails in one line, writing nothing, on a damaged or foreign state.db", async () => {
    const into = await tempDir()
    const cases: Array<[string, (db: Buffer) => Buffer, RegExp]> = [
      ["truncated", (db) => db.subarray(0, 5 * 4096), /state\.db: page \d+ (lies|runs) beyond the end of the file \(truncated\?\)/],
      ["bad checksums", (db) => {
        const b = Buffer.from(db)
        b[16 + 20]! ^= 1
        b[4096 + 16 + 20]! ^= 1
        return b
      }, /state\.db: meta page checksum mismatch$/],
      ["sqlite", () => Buffer.from("SQLite format 3\u0000".padEnd(4096, "\u0000")), /holds a registry of ours, not a Go one/]
    ]
    for (const [label, edit, why] of cases) {
      const bad = path.join(await tempDir(), "go")
      await fs.cp(go.dir, bad, { recursive: true })
      await fs.writeFile(path.join(bad, "state.db"), edit(await fs.readFile(path.join(bad, "state.db"))))
      const msg = failure(await Effect.runPromiseExit(importGoRegistry(bad, path.join(into, "registry"))))
      expect(msg, label).toMatch(why)
      expect(msg, label).not.toContain("\n")
      expect(await fs.readdir(into), label).toEqual([])
    }
  })

  it("refuses a configuration whose stored hash does not match its layers (agents would redeploy)", async () => {
    const { writeBolt } = await import("../../support/boltWriter.js")
    const bad = path.join(await tempDir(), "go")
    await fs.cp(go.dir, bad, { recursive: true })
    const doc = { Name: "p", Mtime: "2025-01-01T00:00:00Z", Hash: "0".repeat(64), Layers: [] }
    const tree = new Map([["configs", new Map([["p", new Map([["current", JSON.stringify(doc)]])]])]])
    await fs.writeFile(path.join(bad, "state.db"), writeBolt(tree).bytes)
    const msg = failure(await Effect.runPromiseExit(importGoRegistry(bad, path.join(await tempDir(), "r"))))
    expect(msg).toMatch(/configuration "p": current has a hash that does not match its layers/)
  })
})

describe("readGoRegistry", () => {
  it("orders versions as the Go registry's byTime keys do: within one second by version bytes", async () => {
    const { writeBolt } = await import("../../support/boltWriter.js")
    const { openBolt } = await import("../../../src/registry/import/Bolt.js")
    const { readGoRegistry } = await import("../../../src/registry/import/GoImport.js")
    const hash = "a".repeat(64)
    const rec = (v: string, ctime: string) => JSON.stringify({ Name: "c", Version: v, File: `files/${hash}`, Hash: hash, Ctime: ctime })
    const byVersion = new Map([["v9", rec("v9", "2026-01-01T00:00:00.1Z")], ["v10", rec("v10", "2026-01-01T00:00:00.9Z")], ["v1", rec("v1", "2025-12-31T23:59:59Z")]])
    const byTime = new Map([
      ["2025-12-31T23:59:59Z#v1", byVersion.get("v1")!],
      ["2026-01-01T00:00:00Z#v10", byVersion.get("v10")!],
      ["2026-01-01T00:00:00Z#v9", byVersion.get("v9")!]
    ])
    const tree = new Map([["components", new Map([["c", new Map([["byVersion", byVersion], ["byTime", byTime]])]])]])
    const reg = readGoRegistry(openBolt(writeBolt(tree).bytes))
    expect(reg.versions.map((v) => v.version)).toEqual(["v1", "v10", "v9"])
  })
})
