import { it } from "@effect/vitest"
import { Chunk, Effect, Exit, Option, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { Readable } from "node:stream"
import ssh2 from "ssh2"
import { afterAll, beforeAll, describe, expect } from "vitest"
import { connect } from "../../src/ssh/Connection.js"
import { download, openSftp, readFile, upload, uploadReadable } from "../../src/ssh/Sftp.js"
import { type FakeServer, startFakeServer } from "./fakeServer.js"

let server: FakeServer
const clientKey = ssh2.utils.generateKeyPairSync("ed25519").private

beforeAll(async () => {
  server = await startFakeServer()
})
afterAll(() => server.stop())

const session = Effect.gen(function* () {
  const client = yield* connect({
    host: "127.0.0.1",
    port: server.port,
    username: "op",
    privateKey: clientKey,
    verifyHostKey: (blob) => blob.equals(server.hostKeyBlob),
    hostKeyRefused: (seen) => `refused ${seen}`
  })
  return yield* openSftp(client)
})

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

  it.scopedLive("uploadReadable takes a Node Readable", () =>
    Effect.gen(function* () {
      const sftp = yield* session
      const data = randomBytes(700_000)
      const n = yield* uploadReadable(sftp, "readable", () => Readable.from([data.subarray(0, 1000), data.subarray(1000)]))
      expect(n).toBe(data.length)
      expect(server.files.find((x) => x.path === "readable")).toMatchObject({ closed: true, sha256: sha(data) })
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

describe("download and readFile", () => {
  it.scopedLive("streams a file in order despite short reads", () =>
    Effect.gen(function* () {
      const data = randomBytes(3 * 1024 * 1024 + 777)
      server.served.set("/files/x", data)
      const sftp = yield* session
      const chunks = yield* Stream.runCollect(download(sftp, "/files/x"))
      const got = Buffer.concat(Chunk.toArray(chunks))
      expect(got.length).toBe(data.length)
      expect(got.equals(data)).toBe(true)
    })
  )

  it.scopedLive("small chunk sizes and an empty file", () =>
    Effect.gen(function* () {
      const data = randomBytes(10_001)
      server.served.set("/a", data)
      server.served.set("/empty", Buffer.alloc(0))
      const sftp = yield* session
      const got = Buffer.concat(Chunk.toArray(yield* Stream.runCollect(download(sftp, "/a", { chunkSize: 1000, maxInFlight: 4 }))))
      expect(got.equals(data)).toBe(true)
      expect(Chunk.size(yield* Stream.runCollect(download(sftp, "/empty")))).toBe(0)
    })
  )

  it.scopedLive("a missing file fails; readFile reads a small one", () =>
    Effect.gen(function* () {
      server.served.set("/configs/p.json", Buffer.from('{"Name":"p"}'))
      const sftp = yield* session
      const exit = yield* Effect.exit(Stream.runDrain(download(sftp, "/nope")))
      expect(Exit.isFailure(exit)).toBe(true)
      expect((yield* readFile(sftp, "/configs/p.json")).toString()).toBe('{"Name":"p"}')
    })
  )
})
