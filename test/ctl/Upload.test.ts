import { it as eit } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { execFile } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { checkWorkersStarted } from "../../src/archive/LayerCheck.js"
import { checkArchive, uploadFile } from "../../src/ctl/Upload.js"
import { connectFake, type FakeServer, startFakeServer } from "../ssh/fakeServer.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const run = promisify(execFile)
let dir: string
let good: Buffer
let bigGood: string
let server: FakeServer

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "upload-"))
  const src = path.join(dir, "src")
  await mkdir(src)
  await writeFile(path.join(src, "a.txt"), "hello\n")
  await writeFile(path.join(src, "b.bin"), randomBytes(300_000))
  await run("tar", ["czf", path.join(dir, "good.tar.gz"), "-C", src, "a.txt", "b.bin"])
  good = await readFile(path.join(dir, "good.tar.gz"))
  await writeFile(path.join(src, "big.bin"), randomBytes(6 * 1024 * 1024))
  bigGood = path.join(dir, "big.tar.gz")
  await run("tar", ["czf", bigGood, "-C", src, "big.bin"])
  server = await startFakeServer()
})
afterAll(async () => {
  await server?.stop()
  await rm(dir, { recursive: true, force: true })
})

/** Runs the check (worker thread) over `data` written to a file; "ok" or the refusal's message. */
let checks = 0
const verdict = async (data: Buffer) => {
  const file = path.join(dir, `check-${checks++}.tar.gz`)
  await writeFile(file, data)
  return Effect.runPromise(
    checkArchive(file, "x.tar.gz").pipe(
      Effect.tap((c) => expect(c).toEqual({ hash: createHash("sha256").update(data).digest("hex"), bytes: data.length })),
      Effect.as("ok" as const),
      Effect.catchTag("InvalidArchive", (e) => Effect.succeed(e.message))
    )
  )
}

describe("tar.gz check", () => {
  it("accepts a real tar.gz", async () => {
    expect(await verdict(good)).toBe("ok")
  })

  it("refuses data that is not gzip at all", async () => {
    expect(await verdict(Buffer.from("just some text, no archive\n".repeat(100)))).toMatch(/not a valid \.tar\.gz \(.*header/)
  })

  it("refuses an uncompressed tar", async () => {
    expect(await verdict(zlib.gunzipSync(good))).toContain("not a valid .tar.gz")
  })

  it("refuses gzip whose content is not a tar", async () => {
    expect(await verdict(zlib.gzipSync(randomBytes(100_000)))).toContain("not a valid .tar.gz")
    expect(await verdict(zlib.gzipSync(Buffer.from("hello")))).toContain("not a valid .tar.gz")
  })

  it("refuses a truncated gzip", async () => {
    expect(await verdict(good.subarray(0, Math.floor(good.length / 2)))).toContain("unexpected end of file")
  })

  it("refuses a complete gzip of a truncated tar", async () => {
    const tarBytes = zlib.gunzipSync(good)
    expect(await verdict(zlib.gzipSync(tarBytes.subarray(0, 2048 + 1000)))).toContain("truncated archive")
  })

  it("refuses corrupted bytes in the middle", async () => {
    const bad = Buffer.from(good)
    for (let i = 1000; i < 1100; i++) bad[i] = bad[i]! ^ 0xff
    expect(await verdict(bad)).toContain("not a valid .tar.gz")
  })

  it("refuses an archive without a single entry (tar czf x -T /dev/null)", async () => {
    await run("tar", ["czf", path.join(dir, "none.tar.gz"), "-T", "/dev/null"])
    expect(await verdict(await readFile(path.join(dir, "none.tar.gz")))).toContain("the archive holds no entries")
  })

  it("refuses an empty file", async () => {
    expect(await verdict(Buffer.alloc(0))).toContain("not a valid .tar.gz")
  })
})

const clientKey = generateEd25519().private
const connected = () =>
  connectFake(server, clientKey)
const silent = { isTTY: false, write: () => true }

describe("uploadFile", () => {
  eit.scopedLive("uploads, hashes and closes a good archive", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const up = yield* uploadFile(client, bigGood, silent)
      const bytes = yield* Effect.promise(() => readFile(bigGood))
      const sha = createHash("sha256").update(bytes).digest("hex")
      expect(up).toEqual({ hash: sha, bytes: bytes.length })
      const f = server.files.find((x) => x.path === "big.tar.gz")!
      expect(f).toMatchObject({ closed: true, inOrder: true, sha256: sha, bytes: bytes.length })
    })
  )

  eit.scopedLive("a corrupt archive is refused and its upload never completed (no CLOSE)", () =>
    Effect.gen(function* () {
      const bytes = Buffer.from(yield* Effect.promise(() => readFile(bigGood)))
      bytes.writeUInt32BE(0xdeadbeef, bytes.length - 8) // wrong CRC in the gzip trailer: found only at the very end
      const file = path.join(dir, "badcrc.tar.gz")
      yield* Effect.promise(() => writeFile(file, bytes))
      const client = yield* connected()
      const exit = yield* Effect.exit(uploadFile(client, file, silent))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("InvalidArchive")
      const f = server.files.find((x) => x.path === "badcrc.tar.gz")
      expect(f?.closed ?? false).toBe(false)
    })
  )

  eit.scopedLive("a file that is not gzip at all stops the upload early, without CLOSE", () =>
    Effect.gen(function* () {
      const file = path.join(dir, "plain.tar.gz")
      yield* Effect.promise(() => writeFile(file, Buffer.alloc(64 * 1024 * 1024, "not an archive ")))
      const client = yield* connected()
      const e = yield* Effect.flip(uploadFile(client, file, silent))
      expect(e.message).toMatch(/^plain\.tar\.gz is not a valid \.tar\.gz \(.*header/)
      const f = server.files.find((x) => x.path === "plain.tar.gz")
      expect(f?.closed ?? false).toBe(false)
      // refused within the first few MiB, not after sending all 64 MiB
      expect(f?.bytes ?? 0).toBeLessThan(48 * 1024 * 1024)
    })
  )

  eit.scopedLive("a small archive is checked and hashed without a worker; a small bad one is never uploaded", () =>
    Effect.gen(function* () {
      const small = zlib.gzipSync(Buffer.concat([Buffer.from(zlib.gunzipSync(good).subarray(0, 1024)), Buffer.alloc(1024)])) // a.txt alone
      const file = path.join(dir, "small.tar.gz")
      yield* Effect.promise(() => writeFile(file, small))
      const client = yield* connected()
      const before = checkWorkersStarted()
      const up = yield* uploadFile(client, file, silent)
      const sha = createHash("sha256").update(small).digest("hex")
      expect(up).toEqual({ hash: sha, bytes: small.length })
      expect(server.files.find((x) => x.path === "small.tar.gz")).toMatchObject({ closed: true, sha256: sha, bytes: small.length })
      const bad = path.join(dir, "smallbad.tar.gz")
      yield* Effect.promise(() => writeFile(bad, Buffer.concat([small, Buffer.from("x")])))
      const e = yield* Effect.flip(uploadFile(client, bad, silent))
      expect(e.message).toBe("smallbad.tar.gz is not a valid .tar.gz (data after the gzip stream); no version was added")
      expect(server.files.find((x) => x.path === "smallbad.tar.gz")).toBeUndefined()
      expect(checkWorkersStarted()).toBe(before)
    })
  )

  eit.scopedLive("a missing file or a directory fails before anything is sent", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const before = server.files.length
      const e1 = yield* Effect.flip(uploadFile(client, path.join(dir, "nope.tar.gz"), silent))
      expect(e1._tag).toBe("FileError")
      const e2 = yield* Effect.flip(uploadFile(client, dir, silent))
      expect(e2.message).toContain("not a regular file")
      // a FIFO is refused without opening it (which would wait for a writer)
      const fifo = path.join(dir, "fifo.tar.gz")
      yield* Effect.promise(() => run("mkfifo", [fifo]))
      const e3 = yield* Effect.flip(uploadFile(client, fifo, silent))
      expect(e3.message).toContain("not a regular file")
      expect(server.files.length).toBe(before)
    })
  )
})
