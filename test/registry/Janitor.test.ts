// The Janitor over the real core layers (SQLite in memory, files in a temp dir), on the live clock
// with short spacings.
import { Effect, ExecutionStrategy, Exit, Layer, Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { Sha256 } from "../../src/domain/Names.js"
import { Principal } from "../../src/domain/Principal.js"
import { BlobStore, BlobStoreLive } from "../../src/registry/BlobStore.js"
import { CommandInterpreter, CommandInterpreterLive } from "../../src/registry/CommandInterpreter.js"
import { LayerVerdictsInline } from "../../src/registry/LayerVerdicts.js"
import { HostStatusLive } from "../../src/registry/HostStatus.js"
import { JanitorLive } from "../../src/registry/Janitor.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { SqlMemory } from "../../src/registry/Sql.js"
import { SignaturesNone } from "../../src/registry/Signatures.js"
import { Storage, StorageLive } from "../../src/registry/Storage.js"
import { Uploads, UploadsLive } from "../../src/registry/Uploads.js"
import { Rollouts } from "../../src/registry/Rollouts.js"
import { tempDir } from "../support/keys.js"
import { layerOf } from "../support/layers.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex") as Sha256
const who = new Principal({ user: "alice", fingerprint: "SHA256:test", comment: "alice" })

const core = (dir: string, maxVersions: number) =>
  CommandInterpreterLive.pipe(
    Layer.provideMerge(Layer.mergeAll(HostStatusLive.pipe(Layer.provideMerge(StorageLive), Layer.provide(SqlMemory)), BlobStoreLive, UploadsLive, LayerVerdictsInline, SignaturesNone, Layer.mock(Rollouts, { live: () => false, summary: () => undefined }))),
    Layer.provideMerge(RegistryConfig.make(dir, { maxVersions, uploadTtl: "10 minutes" }))
  )

const until = async (cond: () => Promise<boolean>) => {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return true
    await new Promise((r) => setTimeout(r, 25))
  }
  return false
}

describe("Janitor", () => {
  it("sweeps stale uploads and applies -maxver on schedules, and stops with its scope", async () => {
    const dir = await tempDir("janitor-")
    dirs.push(dir)
    const scope = Effect.runSync(Scope.make())
    const ctx = await Effect.runPromise(Layer.buildWithScope(core(dir, 1), scope))
    const run = <A, E>(eff: Effect.Effect<A, E, CommandInterpreter | Storage | Uploads | BlobStore>) =>
      Effect.runPromise(Effect.provide(eff, Layer.succeedContext(ctx)))
    const uploadsDir = path.join(dir, "uploads")
    const ageUpload = (hash: string) => fs.utimes(path.join(uploadsDir, hash), new Date(0), new Date(Date.now() - 3_600_000))

    // three versions of one component, none used by a configuration; keep 1
    const blobs = [0, 1, 2].map(() => layerOf(randomBytes(100).toString("hex")))
    for (const [i, b] of blobs.entries()) {
      await run(Effect.flatMap(Uploads, (u) => u.stage(b, sha(b))))
      const r = await run(Effect.flatMap(CommandInterpreter, (c) => c.run(`addver -name code -version v0${i} -hash ${sha(b)}`, who)))
      expect(r.exitCode).toBe(0)
    }
    const stale = randomBytes(50)
    const fresh = randomBytes(50)
    await run(Effect.flatMap(Uploads, (u) => Effect.zipRight(u.stage(stale, sha(stale)), u.stage(fresh, sha(fresh)))))
    await ageUpload(sha(stale))

    const janitorScope = Effect.runSync(Scope.fork(scope, ExecutionStrategy.sequential))
    await Effect.runPromise(
      Layer.buildWithScope(JanitorLive({ retentionEvery: "100 millis", sweepEvery: "100 millis" }).pipe(Layer.provide(Layer.succeedContext(ctx))), janitorScope)
    )

    const files = () => fs.readdir(path.join(dir, "files"))
    expect(await until(async () => (await fs.readdir(uploadsDir)).every((n) => n !== sha(stale)))).toBe(true)
    expect(await fs.readdir(uploadsDir)).toContain(sha(fresh))
    expect(await until(async () => (await files()).length === 1)).toBe(true)
    expect(await files()).toEqual([sha(blobs[2]!)])
    const versions = await run(Effect.flatMap(Storage, (s) => s.versions("code")))
    expect(versions.map((v) => v.version)).toEqual(["v02"])

    // a later stale upload goes on a later tick
    const later = randomBytes(50)
    await run(Effect.flatMap(Uploads, (u) => u.stage(later, sha(later))))
    await ageUpload(sha(later))
    expect(await until(async () => !(await fs.readdir(uploadsDir)).includes(sha(later)))).toBe(true)

    // closed scope: nothing runs any more
    await Effect.runPromise(Scope.close(janitorScope, Exit.void))
    const last = randomBytes(50)
    await run(Effect.flatMap(Uploads, (u) => u.stage(last, sha(last))))
    await ageUpload(sha(last))
    await new Promise((r) => setTimeout(r, 400))
    expect(await fs.readdir(uploadsDir)).toContain(sha(last))
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })
})
