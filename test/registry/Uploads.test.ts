import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { spawnSync } from "node:child_process"
import { readdir, readFile, stat, utimes, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { make } from "../../src/registry/Uploads.js"
import { sha256, tempDirScoped } from "../support/layers.js"

/** The pid of a process that has exited. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid!

const exists = (p: string) => Effect.map(Effect.exit(Effect.promise(() => stat(p))), Exit.isSuccess)

describe("Uploads", () => {
  it.scoped("a completed upload is found by its sha256; the temp name is gone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      const up = yield* make(dir)
      const tmp = yield* up.tempPath
      expect(path.dirname(tmp)).toBe(path.join(dir, "uploads"))
      yield* Effect.promise(() => writeFile(tmp, "payload"))
      const h = sha256("payload")
      expect((yield* Effect.flip(up.find(h)))._tag).toBe("UploadNotFound") // in progress: not claimable
      yield* up.complete(tmp, h)
      const found = yield* up.find(h)
      expect(found).toBe(path.join(dir, "uploads", h))
      expect(yield* Effect.promise(() => readFile(found, "utf8"))).toBe("payload")
      expect(yield* exists(tmp)).toBe(false)
      expect(yield* up.list).toEqual([h])
    })
  )

  it.scoped("refuses to complete or discard paths it did not hand out", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      const up = yield* make(dir)
      const outside = path.join(dir, "victim")
      yield* Effect.promise(() => writeFile(outside, "x"))
      expect((yield* Effect.flip(up.complete(outside, sha256("x"))))._tag).toBe("StorageError")
      yield* up.discard(outside)
      expect(yield* exists(outside)).toBe(true)
      const tmp = yield* up.tempPath
      yield* up.discard(tmp) // missing: still fine
      yield* Effect.promise(() => writeFile(tmp, "x"))
      yield* up.discard(tmp)
      expect(yield* exists(tmp)).toBe(false)
      expect((yield* Effect.flip(up.find("../victim" as never)))._tag).toBe("UploadNotFound")
    })
  )

  it.scoped("sweep removes expired uploads and dead processes' temp files, nothing else", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      const up = yield* make(dir)
      const stage = (s: string) => Effect.as(up.stage(Buffer.from(s), sha256(s)), sha256(s))
      const old = yield* stage("old")
      const fresh = yield* stage("fresh")
      const past = new Date(Date.now() - 3600_000)
      yield* Effect.promise(() => utimes(path.join(dir, "uploads", old), past, past))
      const dead = path.join(dir, "uploads", `.tmp-${deadPid()}-abc-def`)
      const mine = yield* up.tempPath
      yield* Effect.promise(() => Promise.all([writeFile(dead, "x"), writeFile(mine, "y")]))
      const removed = yield* up.sweep(new Date(Date.now() - 1800_000))
      expect(removed).toBe(2)
      expect((yield* Effect.promise(() => readdir(path.join(dir, "uploads")))).sort()).toEqual([fresh, path.basename(mine)].sort())
    })
  )

  it.scoped("at start, temp files of dead processes are removed and completed uploads kept", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      const first = yield* make(dir)
      yield* first.stage(Buffer.from("kept"), sha256("kept"))
      const dead = path.join(dir, "uploads", `.tmp-${deadPid()}-0badb007-0123`)
      // same pid as ours, earlier boot: a restarted container's pid 1
      const reborn = path.join(dir, "uploads", `.tmp-${process.pid}-0badb007-4567`)
      const mine = yield* first.tempPath
      yield* Effect.promise(() => Promise.all([writeFile(dead, "partial"), writeFile(reborn, "partial"), writeFile(mine, "live")]))
      const second = yield* make(dir)
      expect(yield* exists(dead)).toBe(false)
      expect(yield* exists(reborn)).toBe(false)
      expect(yield* exists(mine)).toBe(true)
      expect(yield* second.find(sha256("kept"))).toBeTruthy()
    })
  )
})
