import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { readdir, readFile, unlink, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { BlobStore, BlobStoreLive } from "../../src/registry/BlobStore.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { SqlLive } from "../../src/registry/Sql.js"
import { StorageReadOnly } from "../../src/registry/Storage.js"
import { renderReport, verify } from "../../src/registry/Verify.js"
import { coreLayer, dumpTables, run, sha256, stageUpload, tempDirScoped, TestCoreOn } from "../support/layers.js"
import { testDialects } from "../support/postgres.js"

/** verify wired as `deploy-registry verify -dir D` wires it. */
const standalone = (dir: string) =>
  Layer.mergeAll(StorageReadOnly, BlobStoreLive).pipe(Layer.provide(Layer.merge(SqlLive(dir, { readonly: true }), RegistryConfig.make(dir))))

const listing = (dir: string) => Effect.promise(() => readdir(dir).then((names) => names.sort()))

const populate = Effect.gen(function* () {
  const code = yield* stageUpload("code")
  const conf = yield* stageUpload("conf")
  for (const line of [
    `addver -name code -version v1 -hash ${code}`,
    `addver -name conf -version v1 -hash ${conf}`,
    "addconf -name web -layer code:v1 -layer conf:v1"
  ]) {
    expect((yield* run(line)).exitCode).toBe(0)
  }
  return { code, conf }
})

describe("verify", () => {
  it.scoped("finds nothing wrong in a sound registry, and changes nothing", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      yield* Effect.gen(function* () {
        yield* populate
        const before = yield* dumpTables
        const report = yield* verify
        expect(report).toEqual({ problems: [], blobs: 2, versions: 2, configurations: 1 })
        expect(renderReport(report)).toEqual({ output: "ok: 2 blobs, 2 versions, 1 configurations checked\n", exitCode: 0 })
        expect(yield* dumpTables).toEqual(before)
      }).pipe(Effect.provide(coreLayer(dir)))
    })
  )

  it.scoped("reports corrupt and missing blobs and broken references, one line each", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      yield* Effect.gen(function* () {
        const { code, conf } = yield* populate
        yield* Effect.promise(() => writeFile(path.join(dir, "files", code), "tampered"))
        yield* Effect.promise(() => unlink(path.join(dir, "files", conf)))
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE states SET hash = ${"0".repeat(64)}`
        yield* sql`UPDATE versions SET version = 'v2' WHERE component = 'conf'`
        const report = yield* verify
        expect(report.problems).toEqual([
          `blob ${code}: content has sha256 ${sha256("tampered")}`,
          `version "v2" of component "conf": blob ${conf} is missing`,
          `configuration "web": layer conf:v1 names a missing version`,
          `state 1 of configuration "web": hash ${"0".repeat(64)} does not match its layers`
        ])
        const printed = renderReport(report)
        expect(printed.exitCode).toBe(1)
        expect(printed.output.split("\n")).toHaveLength(6) // 4 problems, the count, and the final newline
        expect(printed.output.endsWith("4 problems found\n")).toBe(true)
        const viaConsole = yield* run("verify")
        expect(viaConsole).toEqual(printed)
      }).pipe(Effect.provide(coreLayer(dir, { db: "file" })))
    })
  )

  it.scoped("a blob removed between listing and reading (a concurrent retention) is not a problem", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      yield* Effect.gen(function* () {
        yield* populate
        const real = yield* BlobStore
        const ghost = sha256("retention took me")
        const racing = BlobStore.of({ ...real, list: Effect.map(real.list, (l) => [...l, ghost]) })
        const report = yield* verify.pipe(Effect.provideService(BlobStore, racing))
        expect(report).toEqual({ problems: [], blobs: 2, versions: 2, configurations: 1 })
      }).pipe(Effect.provide(coreLayer(dir)))
    })
  )

  it.scoped("runs standalone on a directory, read-only, beside a live registry", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      // the registry keeps its database open while verify reads it
      yield* Layer.build(coreLayer(dir, { db: "file" }))
      yield* populate.pipe(Effect.provide(coreLayer(dir, { db: "file" })))
      const before = yield* listing(dir)
      expect(before).toContain("state.db-shm")
      const report = yield* verify.pipe(Effect.provide(standalone(dir)))
      expect(report).toEqual({ problems: [], blobs: 2, versions: 2, configurations: 1 })
      expect(yield* listing(dir)).toEqual(before)
    })
  )

  it.scoped("on a stopped registry's directory creates no -wal/-shm files and changes no byte", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      yield* populate.pipe(Effect.provide(coreLayer(dir, { db: "file" })))
      const before = yield* listing(dir)
      expect(before).not.toContain("state.db-shm")
      const db = yield* Effect.promise(() => readFile(path.join(dir, "state.db")))
      const report = yield* verify.pipe(Effect.provide(standalone(dir)))
      expect(report.problems).toEqual([])
      expect(report.configurations).toBe(1)
      expect(yield* listing(dir)).toEqual(before)
      expect(yield* Effect.promise(() => readFile(path.join(dir, "state.db")))).toEqual(db)
    })
  )

  it.scoped("standalone on a directory without a registry fails clearly", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      const e = yield* Effect.flip(verify.pipe(Effect.provide(standalone(dir))))
      expect(e.message).toBe("internal error: no database in the data directory")
      expect(yield* listing(dir)).not.toContain("state.db")
    })
  )
})

const postgres = testDialects().find((d) => d.dialect === "postgres")!

describe.skipIf(postgres.skip !== undefined)("verify on PostgreSQL (blobs in the database)", () => {
  it.scoped("finds nothing wrong in a sound registry; reports a tampered and a missing blob", () =>
    Effect.gen(function* () {
      yield* Effect.gen(function* () {
        const { code, conf } = yield* populate
        expect(yield* verify).toEqual({ problems: [], blobs: 2, versions: 2, configurations: 1 })
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE blob_chunks SET data = ${Buffer.from("tampered")} WHERE hash = ${code}`
        yield* sql`DELETE FROM blobs WHERE hash = ${conf}`
        expect((yield* verify).problems).toEqual([
          `blob ${code}: content has sha256 ${sha256("tampered")}`,
          `version "v1" of component "conf": blob ${conf} is missing`
        ])
      }).pipe(Effect.provide(TestCoreOn(postgres)))
    })
  )
})
