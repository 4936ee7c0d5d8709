import { it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect } from "vitest"
import { openSftp, request } from "../../src/ssh/Sftp.js"
import { causeOf, readCapped, readInto } from "../../src/ssh/SftpRead.js"
import { upload } from "../../src/ssh/SftpWrite.js"
import { connectFake, type FakeServer, startFakeServer } from "./fakeServer.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

let server: FakeServer
const clientKey = generateEd25519().private

beforeAll(async () => {
  server = await startFakeServer()
})
afterAll(() => server.stop())

const withClient = Effect.gen(function* () {
  const client = yield* connectFake(server, clientKey)
  return { client, sftp: yield* openSftp(client) }
})
const session = Effect.map(withClient, (s) => s.sftp)

/** Settles with "failed"/"succeeded", or "still waiting" after 5 s (ssh2 drops requests on a closed channel). */
const outcome = <A, E>(e: Effect.Effect<A, E>) =>
  Effect.either(e).pipe(
    Effect.map((r) => (r._tag === "Left" ? `failed: ${(r.left as { message?: string }).message}` : "succeeded")),
    Effect.timeoutTo({ duration: "5 seconds", onTimeout: () => "still waiting", onSuccess: (s) => s })
  )

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** The data as a stream of odd-sized chunks (so re-chunking is exercised). */
const chunked = (data: Buffer, sizes: ReadonlyArray<number>) => {
  const parts: Array<Uint8Array> = []
  let i = 0
  for (let k = 0; i < data.length; k++) {
    const n = sizes[k % sizes.length]!
    parts.push(data.subarray(i, i + n))
    i += n
  }
  return Stream.fromIterable(parts)
}

describe("upload", () => {
  it.scopedLive("writes every byte in order, in large requests, then closes", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const data = randomBytes(5 * 1024 * 1024 + 12345)
      const progress: Array<number> = []
      const n = yield* upload(sftp, "up1.tar.gz", chunked(data, [65536, 1, 100_000, 7]), {
        onProgress: (b) => progress.push(b)
      })
      expect(n).toBe(data.length)
      const f = server.files.find((x) => x.path === "up1.tar.gz")!
      expect(f.closed).toBe(true)
      expect(f.inOrder).toBe(true)
      expect(f.bytes).toBe(data.length)
      expect(f.sha256).toBe(sha(data))
      expect(f.maxWrite).toBeGreaterThan(200 * 1024) // large requests, not 32 KiB ones
      expect(progress.at(-1)).toBe(data.length)
      expect([...progress].sort((a, b) => a - b)).toEqual(progress) // monotonic
    })
  )

  it.scopedLive("a source may refill the same buffer once a chunk was consumed", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const data = randomBytes(2 * 1024 * 1024 + 4321)
      const shared = Buffer.alloc(100_000) // not a multiple of the request size: leftovers straddle chunks
      let pos = 0
      const source = Stream.repeatEffectOption(
        Effect.suspend(() => {
          if (pos >= data.length) return Effect.fail(Option.none())
          const n = data.copy(shared, 0, pos, pos + shared.length)
          pos += n
          return Effect.succeed(shared.subarray(0, n))
        })
      )
      yield* upload(sftp, "reused", source)
      expect(server.files.find((x) => x.path === "reused")!.sha256).toBe(sha(data))
    })
  )

  it.scopedLive("an empty stream makes an empty, closed file", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      expect(yield* upload(sftp, "empty", Stream.empty)).toBe(0)
      const f = server.files.find((x) => x.path === "empty")!
      expect(f.closed).toBe(true)
      expect(f.sha256).toBe(sha(Buffer.alloc(0)))
    })
  )

  it.scopedLive("a failing source aborts without CLOSE", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const source = Stream.concat(chunked(randomBytes(3 * 1024 * 1024), [65536]), Stream.fail("refused" as const))
      const exit = yield* Effect.exit(upload(sftp, "bad", source))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain("refused")
      const f = server.files.find((x) => x.path === "bad")!
      expect(f.closed).toBe(false)
    })
  )

  it.scopedLive("fails, not hangs, when the server hangs up mid-upload", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const exit = yield* Effect.exit(upload(sftp, "drop-me", chunked(randomBytes(8 * 1024 * 1024), [65536])))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(server.files.find((x) => x.path === "drop-me")!.closed).toBe(false)
    })
  )

  it.scopedLive("small windows and chunks still keep order", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const data = randomBytes(300_000)
      yield* upload(sftp, "small", chunked(data, [999]), { chunkSize: 4096, maxInFlight: 3 })
      const f = server.files.find((x) => x.path === "small")!
      expect(f.inOrder).toBe(true)
      expect(f.maxWrite).toBe(4096)
      expect(f.sha256).toBe(sha(data))
    })
  )
})

/** All of `path` through readInto, the pieces copied out of the pooled buffers as they come. */
const readAll = (sftp: Parameters<typeof readInto>[0], path: string) =>
  Effect.suspend(() => {
    const parts: Array<Buffer> = []
    return readInto(sftp, path, (pieces) => Effect.sync(() => void parts.push(...pieces.map((p) => Buffer.from(p)))), (cause) => cause).pipe(
      Effect.map(() => Buffer.concat(parts))
    )
  })

describe("readInto and readCapped", () => {
  it.scopedLive("readInto delivers a file in order despite short reads", () =>
    Effect.gen(function* () {
      const data = randomBytes(3 * 1024 * 1024 + 777)
      server.served.set("/files/x", data)
      const sftp = yield* session
      const got = yield* readAll(sftp, "/files/x")
      expect(got.length).toBe(data.length)
      expect(got.equals(data)).toBe(true)
      server.served.set("/empty", Buffer.alloc(0))
      expect((yield* readAll(sftp, "/empty")).length).toBe(0)
    })
  )

  it.scopedLive("a missing file fails with SFTP's no-such-file as the cause", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const exit = yield* Effect.exit(readAll(sftp, "/nope"))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(JSON.stringify(exit.cause)).toContain('"code":2')
      const capped = yield* Effect.flip(readCapped(sftp, "/nope", 1000))
      expect(capped._tag === "SshError" && (causeOf(capped) as { code?: number }).code).toBe(2)
    })
  )

  it.scopedLive("readCapped reads a small file whole and refuses one over its limit, having read little past it", () =>
    Effect.gen(function* () {
      server.served.set("/configs/p.json", Buffer.from('{"Name":"p"}'))
      server.served.set("/big", randomBytes(300_000))
      const sftp = yield* session
      expect((yield* readCapped(sftp, "/configs/p.json", 12)).toString()).toBe('{"Name":"p"}')
      const exit = yield* Effect.exit(readCapped(sftp, "/big", 100_000))
      expect(exit).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: { _tag: "FileTooLarge", limit: 100_000 } } })
    })
  )
})

describe("after the connection closed", () => {
  it.scopedLive("every request fails at once instead of hanging", () =>
    Effect.gen(function* () {
      const { client, sftp } = yield* withClient
      server.served.set("/late", Buffer.from("x"))
      const gone = Effect.async<void>((resume) => void sftp.once("close", () => resume(Effect.void)))
      client.end()
      yield* gone
      expect(yield* outcome(upload(sftp, "late.bin", Stream.make(randomBytes(1000))))).toMatch(/^failed: .*connection closed/)
      expect(yield* outcome(upload(sftp, "late-empty", Stream.empty))).toMatch(/^failed: .*connection closed/)
      expect(yield* outcome(readCapped(sftp, "/late", 1000))).toMatch(/^failed: .*connection closed/)
      expect(server.files.find((f) => f.path.startsWith("late"))).toBeUndefined()
    })
  )

  it.scopedLive("a request ssh2 never answers settles when the session closes", () =>
    Effect.gen(function* () {
      const { client, sftp } = yield* withClient
      // A request whose reply never comes (as when ssh2 dropped it); closing must still settle it.
      const warnings: Array<string> = []
      const onWarning = (w: Error) => void warnings.push(w.name)
      process.on("warning", onWarning)
      yield* Effect.addFinalizer(() => Effect.sync(() => void process.off("warning", onWarning)))
      const fibers = yield* Effect.forEach(Array.from({ length: 40 }), () => Effect.fork(outcome(request<void>(sftp, "stuck", () => {}))))
      yield* Effect.sleep("50 millis")
      const before = sftp.listenerCount("close")
      client.end()
      for (const f of fibers) expect(yield* Fiber.join(f)).toBe("failed: sftp stuck failed: connection closed")
      expect(sftp.listenerCount("close")).toBeLessThanOrEqual(before - 40)
      expect(warnings).not.toContain("MaxListenersExceededWarning")
    })
  )

  it.scopedLive("an upload waiting for the server settles when the server hangs up", () =>
    Effect.gen(function* () {
      const { sftp } = yield* withClient
      // "drop" makes the fake server hang up after 1 MiB; the upload must fail, not wait.
      expect(yield* outcome(upload(sftp, "drop-late", chunked(randomBytes(8 * 1024 * 1024), [65536])))).toMatch(/^failed/)
      expect(yield* outcome(upload(sftp, "after-drop", Stream.make(randomBytes(10))))).toMatch(/connection closed/)
    })
  )
})
