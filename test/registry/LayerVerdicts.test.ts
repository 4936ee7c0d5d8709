// The registry's addver check (LayerVerdictsLive): a small layer is judged on the main thread (no worker
// starts: a worker's start cost ~100 ms of registry CPU per addver), a small bomb still goes to a worker,
// and the verdicts and messages are the same either way.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { createHash } from "node:crypto"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { checkWorkersStarted } from "../../src/archive/LayerCheck.js"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { layerFilesRead, LayerVerdicts, LayerVerdictsLive } from "../../src/registry/LayerVerdicts.js"
import { file, gz, tar } from "../support/tar.js"

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex") as Sha256

describe("LayerVerdictsLive", () => {
  it.scoped("judges small layers without a worker, bombs with one; the same refusals, each labelled by its addver", () =>
    Effect.gen(function* () {
      const d = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(path.join(os.tmpdir(), "verdicts-"))),
        (d) => Effect.promise(() => rm(d, { recursive: true, force: true }))
      )
      const put = (name: string, b: Buffer) => Effect.promise(() => writeFile(path.join(d, name), b)).pipe(Effect.as(path.join(d, name)))
      const verdicts = yield* Effect.provide(LayerVerdicts, LayerVerdictsLive)
      const good = gz(tar(file("a", "hello")))
      const bad = gz(tar(file("../a", "hello")))
      const bomb = gz(tar(file("z", Buffer.alloc(64 << 20)), file("../b", "x")))
      const before = checkWorkersStarted()
      expect(yield* Effect.exit(verdicts.check(sha(good), yield* put("good", good), "app@1"))).toEqual(Exit.void)
      const refused = new LayerRefused({ layer: "app@2", entry: "../a", reason: 'path contains a ".." component' })
      expect(yield* Effect.exit(verdicts.check(sha(bad), yield* put("bad", bad), "app@2"))).toEqual(Exit.fail(refused))
      expect(checkWorkersStarted()).toBe(before)
      const bombExit = yield* Effect.exit(verdicts.check(sha(bomb), yield* put("bomb", bomb), "app@3"))
      expect(checkWorkersStarted()).toBe(before + 1)
      expect(bombExit).toEqual(Exit.fail(new LayerRefused({ layer: "app@3", entry: "../b", reason: 'path contains a ".." component' })))
      // Remembered: the same content under another addver is not read again, and named by it.
      expect(yield* Effect.exit(verdicts.check(sha(bad), path.join(d, "gone"), "app@4"))).toEqual(Exit.fail(new LayerRefused({ ...refused, layer: "app@4" })))
    })
  )

  it.scoped("a verdict recorded by the upload's check is addver's: the layer is not read again", () =>
    Effect.gen(function* () {
      const verdicts = yield* Effect.provide(LayerVerdicts, LayerVerdictsLive)
      const [ok, refused, unreadable] = ["a", "b", "c"].map((c) => sha(Buffer.from(c))) as [Sha256, Sha256, Sha256]
      yield* verdicts.record(ok, { ok: { entries: 1, bytes: 300_000, hash: undefined } })
      yield* verdicts.record(refused, { refused: { layer: "", entry: "x/../y", reason: 'path contains a ".." component' } })
      yield* verdicts.record(unreadable, { unreadable: "boom" })
      const before = layerFilesRead()
      // No such file: a read would fail "cannot read".
      expect(yield* Effect.exit(verdicts.check(ok, "/nonexistent/ok", "app@1"))).toEqual(Exit.void)
      expect(yield* Effect.exit(verdicts.check(refused, "/nonexistent/refused", "app@2"))).toEqual(
        Exit.fail(new LayerRefused({ layer: "app@2", entry: "x/../y", reason: 'path contains a ".." component' }))
      )
      expect(layerFilesRead()).toBe(before)
      // "Cannot read" is no verdict: addver reads the file.
      const exit = yield* Effect.exit(verdicts.check(unreadable, "/nonexistent/c", "app@3"))
      expect(layerFilesRead()).toBe(before + 1)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("LayerUnreadable")
    })
  )
})
