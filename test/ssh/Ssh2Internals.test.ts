// The canary for src/ssh/Ssh2Internals.ts: every private field of ssh2 we read is where we expect it on
// the installed ssh2, and has the value that makes our fast paths run. An ssh2 upgrade that moves one
// fails here, by name, instead of quietly slowing transfers down or leaving requests unanswered.
import { it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { createHash, createPrivateKey, randomBytes } from "node:crypto"
import { promises as fs, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import ssh2 from "ssh2"
import type { ParsedKey, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, describe, expect } from "vitest"
import pkg from "../../package.json" with { type: "json" }
import type { Sha256 } from "../../src/domain/Names.js"
import { BlobStore } from "../../src/registry/BlobStore.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"
import { openSftp, requestSize } from "../../src/ssh/Sftp.js"
import { upload } from "../../src/ssh/SftpWrite.js"
import { MAX_IO } from "../../src/ssh/SftpProtocol.js"
import {
  channelOpen, checkSsh2, connectionSocket, fastPaths, keyHashAlgorithm, maxReadLen, maxWriteLen, signWithKeyObject,
  SSH2_VERSION, windowAdjustDue
} from "../../src/ssh/Ssh2Internals.js"
import { directDataReplies } from "../../src/ssh/Ssh2InternalsRead.js"
import { writeRequest } from "../../src/ssh/Ssh2InternalsWrite.js"
import { readInto } from "../../src/ssh/SftpRead.js"
import { clientSftp, connectClient } from "../support/registry.js"
import { fixedStorage, generateKey, type InProcessServer, startInProcess } from "../support/sshServer.js"
import { connectFake, type FakeServer, startFakeServer } from "./fakeServer.js"

const RSA_PUBLIC = ssh2.utils.generateKeyPairSync("rsa", { bits: 2048 }).public

let server: FakeServer
beforeAll(async () => {
  server = await startFakeServer()
})
afterAll(() => server.stop())

describe("ssh2 internals", () => {
  it("the start-up check passes every time (ssh2's own ed25519 generator makes ~1 key in 256 it cannot parse)", () => {
    const problems = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      const p = checkSsh2()
      if (p !== undefined) problems.add(p)
    }
    expect([...problems]).toEqual([])
  })

  it("ssh2 is pinned to one exact version, and that version is installed", () => {
    const pinned = (pkg.dependencies as Record<string, string>)["ssh2"]!
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/)
    const installed = JSON.parse(readFileSync(createRequire(import.meta.url).resolve("ssh2/package.json"), "utf8")) as { version: string }
    expect(installed.version).toBe(pinned)
    expect(SSH2_VERSION).toBe(pinned)
  })

  it.scopedLive("client SFTP: large request lengths with an OpenSSH-named server, channel states while open and after close", () =>
    Effect.gen(function* () {
      const client = yield* connectFake(server, generateEd25519().private)
      const sftp = yield* openSftp(client)
      // 32 KiB is ssh2's fallback: anything larger means the fields were read.
      expect(maxReadLen(sftp)).toBeGreaterThan(32 * 1024)
      expect(maxWriteLen(sftp)).toBeGreaterThan(32 * 1024)
      expect(channelOpen(sftp)).toBe(true)
      const closed = Effect.async<void>((resume) => void sftp.once("close", () => resume(Effect.void)))
      client.end()
      yield* closed
      expect(channelOpen(sftp)).toBe(false)
    })
  )
})

// The server side: a real SFTP read and write against the registry's SSH server (in-process, so the
// counters are this process's), each going through every fast path we keep.
describe("ssh2 internals, server side", () => {
  it("checkSsh2 accepts the installed ssh2 (the registry runs it at start-up)", () => {
    expect(checkSsh2()).toBeUndefined()
  })

  it("an accessor whose field moved throws, naming it, instead of falling back", () => {
    const moved = {} as never
    expect(() => maxReadLen(moved)).toThrow(/_maxReadLen/)
    expect(() => channelOpen(moved)).toThrow(/incoming\/outgoing/)
    expect(() => connectionSocket(moved)).toThrow(/_sock/)
    expect(() => windowAdjustDue(moved)).toThrow(/_protocol/)
    expect(() => writeRequest(moved, Buffer.alloc(4), Buffer.alloc(1), 0, () => undefined)).toThrow(/_protocol/)
    expect(() => keyHashAlgorithm(Object.create(null) as never)).toThrow(/Hash Algorithm/)
  })

  it("parsed keys hold the private PEM and the hash algorithm under the symbols we use", () => {
    const key = generateKey("canary").parsed
    expect(keyHashAlgorithm(key)).toBeNull() // ed25519 names no hash
    const rsa = ssh2.utils.parseKey(RSA_PUBLIC) as ParsedKey
    expect(keyHashAlgorithm(rsa)).toBe("sha1")
    const pem = key.getPrivatePEM()
    signWithKeyObject(key, createPrivateKey(pem))
    // ssh2's sign() now signs with the KeyObject, and the signature still verifies
    const data = Buffer.from("canary")
    const signature = key.sign(data)
    expect(signature).toBeInstanceOf(Buffer)
    expect(key.verify(data, signature as Buffer)).toBe(true)
  })

  let srv: InProcessServer
  const blob = randomBytes(5 * 1024 * 1024 + 3)
  const hash = createHash("sha256").update(blob).digest("hex") as Sha256
  beforeAll(async () => {
    srv = await startInProcess({ storage: fixedStorage([]) })
    const tmp = path.join(srv.dir, `incoming-${hash}`)
    await fs.writeFile(tmp, blob)
    await srv.run(Effect.flatMap(BlobStore, (store) => store.adopt(tmp, hash)))
  })
  afterAll(() => srv.close())

  const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
    new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))
  /**
   * How often each fast path ran during one SFTP session of `user`, from opening it to the server closing
   * it after the client's EOF (as OpenSSH's client ends a session).
   */
  const counted = async (user: "deploy-agent" | "alice", session: (s: SFTPWrapper) => Promise<void>) => {
    const client = await connectClient(srv.port, user, { privateKey: user === "alice" ? srv.operator.privateKey : srv.agent.privateKey })
    try {
      const before = { ...fastPaths }
      const s = await clientSftp(client)
      await session(s)
      await new Promise<void>((resolve) => {
        s.once("close", () => resolve())
        s.end()
      })
      return Object.fromEntries(Object.entries(fastPaths).map(([k, v]) => [k, v - before[k as keyof typeof fastPaths]])) as typeof fastPaths
    } finally {
      client.end()
    }
  }

  it("a download: limits@openssh.com in VERSION and its reply, DATA replies written without a copy, waits for the window", async () => {
    const d = await counted("deploy-agent", async (s) => {
      expect(maxReadLen(s)).toBe(MAX_IO) // from the limits reply: the VERSION rewrite and the raw reply both ran
      // 64 reads in flight, as the agent's reader keeps: more than the client's 2 MiB window
      const local = path.join(srv.dir, "canary-download")
      await p<void>((cb) => s.fastGet(`/files/${hash}`, local, { concurrency: 64, chunkSize: MAX_IO }, (e) => cb(e)))
      expect((await fs.readFile(local)).equals(blob)).toBe(true)
    })
    const replies = Math.ceil(blob.length / MAX_IO)
    expect(d.rewrittenPackets).toBe(1)
    // the limits reply and every DATA reply went straight to the channel
    expect(d.directPackets).toBeGreaterThanOrEqual(1 + replies)
    // 5 MiB through a 2 MiB window: the reader waited for the client's adjustment
    expect(d.windowWakes).toBeGreaterThan(0)
    expect(d.pushes).toBeGreaterThan(replies)
    expect(d.sshdEnds).toBe(1)
  })

  it("a download with readInto() (the agent's reader): every DATA reply copied from the channel straight into its READ's buffer", async () => {
    const d = await counted("deploy-agent", async (s) => {
      directDataReplies(s) // as openSftp installs it
      const pieces: Array<Buffer> = []
      await Effect.runPromise(readInto(s, `/files/${hash}`, (ps) => Effect.sync(() => void pieces.push(...ps.map((x) => Buffer.from(x)))), (c) => c))
      expect(Buffer.concat(pieces).equals(blob)).toBe(true)
    })
    expect(d.directReads).toBe(Math.ceil(blob.length / MAX_IO))
  })

  it("an upload of many small pipelined writes: reading pauses at 64 requests and the window is reopened by us", async () => {
    const d = await counted("alice", async (s) => {
      const h = await p<Buffer>((cb) => s.open("canary.bin", "w", cb))
      // 200 × 8 KiB sent at once: more than 64 requests and more than half the 2 MiB window
      const piece = 8 * 1024
      const data = blob.subarray(0, 200 * piece)
      await Promise.all(Array.from({ length: 200 }, (_, i) => p<void>((cb) => s.write(h, data, i * piece, piece, i * piece, (e) => cb(e)))))
      await p<void>((cb) => s.close(h, (e) => cb(e)))
    })
    expect(d.rewrittenPackets).toBe(1)
    expect(d.windowAdjusts).toBeGreaterThan(0)
    expect(d.sshdEnds).toBe(1)
  })

  it("an upload with upload(): every WRITE is framed straight into SSH packets, none through ssh2's copying write()", async () => {
    const size = blob.length
    let requests = 0
    const d = await counted("alice", async (s) => {
      requests = Math.ceil(size / requestSize(s))
      // more than the registry's 2 MiB window, so the upload also waits for the window on the way
      const n = await Effect.runPromise(upload(s, "canary-upload.bin", Stream.make(blob.subarray(0, 1000), blob.subarray(1000))))
      expect(n).toBe(size)
    })
    expect(d.directWrites).toBe(requests)
    expect(d.copiedWrites).toBe(0)
    // ssh2's native AES-GCM (the registry's first cipher): every request's packets in a pooled buffer
    expect(d.pooledWrites).toBe(requests)
    expect(d.windowWakes).toBeGreaterThan(0)
  })
})
