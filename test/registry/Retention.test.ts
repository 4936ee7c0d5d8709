import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Sha256 } from "../../src/domain/Names.js"
import { BlobStore } from "../../src/registry/BlobStore.js"
import { retention } from "../../src/registry/Retention.js"
import { Uploads } from "../../src/registry/Uploads.js"
import { layerOf, run, sha256, stageUpload, TestCoreOn } from "../support/layers.js"
import { testDialects } from "../support/postgres.js"

const addver = (component: string, version: string, content: string) =>
  Effect.gen(function* () {
    const h = yield* stageUpload(content)
    const r = yield* run(`addver -name ${component} -version ${version} -hash ${h}`)
    expect(r.exitCode, r.output).toBe(0)
    return h
  })

/** A blob with no version, as a crash between adopt and commit would leave. */
const orphan = (content: string) =>
  Effect.gen(function* () {
    const h = yield* stageUpload(content)
    yield* (yield* BlobStore).adopt(yield* (yield* Uploads).find(h), h)
    return h
  })

describe.each(testDialects({ migrated: true }))("retention on $dialect", (dialect) => {
  if (dialect.skip !== undefined) return void it.skip(dialect.skip, () => {})
  const TestCore = (options: { maxVersions: number }) => TestCoreOn(dialect, options)
  it.scoped("keeps the N newest versions per component and those in current use; then drops unreferenced blobs", () =>
    Effect.gen(function* () {
      const v1 = yield* addver("code", "v1", "one")
      const v2 = yield* addver("code", "v2", "two")
      const v3 = yield* addver("code", "v3", "three")
      const v4 = yield* addver("code", "v4", "four")
      yield* addver("other", "v1", "one") // shares v1's blob
      const lone = yield* addver("other", "v0", "zero")
      expect((yield* run("addconf -name p -layer code:v1")).exitCode).toBe(0)
      expect((yield* run("addconf -name q -layer code:v2")).exitCode).toBe(0)
      expect((yield* run("changeconf -name q -component code -version v4")).exitCode).toBe(0) // v2 only in history now
      const stray = yield* orphan("stray")
      // a pending upload whose bytes are also stored as a blob: the blob is kept while the upload waits
      const pending = yield* orphan("pending")
      yield* stageUpload("pending")

      const doomedBytes = ((yield* (yield* BlobStore).stat(v2 as Sha256))?.size ?? 0) + ((yield* (yield* BlobStore).stat(stray as Sha256))?.size ?? 0)
      const report = yield* retention
      expect(report.versions.map((v) => `${v.component}:${v.version}`)).toEqual(["code:v2"])
      // what the janitor's deploy_registry_janitor_freed_bytes_total adds
      expect(report.freedBytes).toBe(doomedBytes)
      expect(doomedBytes).toBeGreaterThan(0)
      expect([...report.blobs].sort()).toEqual([v2, stray].sort())
      expect([...(yield* (yield* BlobStore).list)].sort()).toEqual([v1, v3, v4, lone, pending].sort())
      expect((yield* run("showcomp -name code")).output).not.toMatch(/v2/)

      // nothing left to do: a second run removes nothing
      expect(yield* retention).toEqual({ versions: [], blobs: [], freedBytes: 0 })
      // the removed version makes rollback to the state that used it fail clearly
      const r = yield* run("rollback -name q")
      expect(r).toMatchObject({ exitCode: 1 })
      expect(r.output).toMatch(/version "v2" of component "code" has been removed/)
    }).pipe(Effect.provide(TestCore({ maxVersions: 2 })))
  )

  it.scoped("keeps at least one version even when configured with 0", () =>
    Effect.gen(function* () {
      yield* addver("code", "v1", "one")
      const v2 = yield* addver("code", "v2", "two")
      const report = yield* retention
      expect(report.versions.map((v) => v.version)).toEqual(["v1"])
      expect(yield* (yield* BlobStore).list).toEqual([v2])
      expect(sha256(layerOf("two"))).toBe(v2)
    }).pipe(Effect.provide(TestCore({ maxVersions: 0 })))
  )
})
