import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Stream } from "effect"
import { readFile, stat, writeFile } from "node:fs/promises"
import * as path from "node:path"
import type { Sha256 } from "../../src/domain/Names.js"
import { BlobStore, make } from "../../src/registry/BlobStore.js"
import { sha256, tempDirScoped } from "../support/layers.js"

const setup = Effect.gen(function* () {
  const dir = yield* tempDirScoped()
  const store = yield* make(dir)
  const put = (content: string) =>
    Effect.gen(function* () {
      const tmp = path.join(dir, `incoming-${Math.random()}`)
      yield* Effect.promise(() => writeFile(tmp, content))
      const hash = sha256(content)
      yield* store.adopt(tmp, hash)
      return { hash, tmp }
    })
  return { dir, store, put }
})

const text = (s: Stream.Stream<Uint8Array, unknown>) =>
  Effect.map(Stream.runCollect(s), (chunks) => Buffer.concat(Chunk.toArray(chunks)).toString())

describe("BlobStore", () => {
  it.scoped("adopts a file under files/<sha256> and serves it back", () =>
    Effect.gen(function* () {
      const { dir, store, put } = yield* setup
      const { hash, tmp } = yield* put("hello blob")
      expect(store.path(hash)).toBe(path.join(dir, "files", hash))
      expect(yield* Effect.promise(() => readFile(path.join(dir, "files", hash), "utf8"))).toBe("hello blob")
      expect(yield* Effect.exit(Effect.promise(() => stat(tmp)))).toSatisfy(Exit.isFailure)
      expect(yield* store.has(hash)).toBe(true)
      expect((yield* store.stat(hash))?.size).toBe(10)
      expect(yield* text(store.stream(hash))).toBe("hello blob")
      expect(yield* store.has(sha256("other"))).toBe(false)
      expect(yield* store.stat(sha256("other"))).toBeUndefined()
    })
  )

  it.scoped("writes once: adopting an existing hash leaves the stored file alone", () =>
    Effect.gen(function* () {
      const { dir, put } = yield* setup
      const { hash } = yield* put("same")
      const before = yield* Effect.promise(() => stat(path.join(dir, "files", hash)))
      const { tmp } = yield* put("same")
      const after = yield* Effect.promise(() => stat(path.join(dir, "files", hash)))
      expect(after.ino).toBe(before.ino)
      expect(yield* Effect.exit(Effect.promise(() => stat(tmp)))).toSatisfy(Exit.isFailure)
    })
  )

  it.scoped("lists sorted hashes only, removes idempotently", () =>
    Effect.gen(function* () {
      const { dir, store, put } = yield* setup
      const a = (yield* put("a")).hash
      const b = (yield* put("b")).hash
      yield* Effect.promise(() => writeFile(path.join(dir, "files", "stray.tmp"), "x"))
      expect(yield* store.list).toEqual([a, b].sort())
      yield* store.remove(a)
      yield* store.remove(a)
      expect(yield* store.list).toEqual([b])
    })
  )

  it.scoped("never builds a path from something that is not a sha256", () =>
    Effect.gen(function* () {
      const { store } = yield* setup
      const evil = "../../etc/passwd" as Sha256
      expect((yield* Effect.flip(store.has(evil)))._tag).toBe("StorageError")
      expect((yield* Effect.flip(store.remove(evil)))._tag).toBe("StorageError")
      expect((yield* Effect.flip(Stream.runDrain(store.stream(evil))))._tag).toBe("StorageError")
      expect(() => store.path(evil)).toThrow()
    })
  )

  it.scoped("a missing blob streams as a StorageError that names no path", () =>
    Effect.gen(function* () {
      const { store } = yield* setup
      const e = yield* Effect.flip(Stream.runDrain(store.stream(sha256("absent"))))
      expect(e.message).toBe("internal error: blob not found")
    })
  )

  it.effect("is a Tag other implementations can replace", () => Effect.sync(() => expect(BlobStore.key).toBe("registry/BlobStore")))
})
