// The agent's SFTP session against a scripted in-process ssh2 server: every request must settle when
// the session is gone (ssh2 drops requests on a closed channel without calling back).
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import ssh2 from "ssh2"
import type { Client, Connection, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, afterEach, describe, expect, it } from "vitest"
import { MAX_DOCUMENT_BYTES, makeSession, type Sink } from "../../src/agent/RegistryClient.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { clientSftp, connectClient } from "../support/registry.js"
import { documentText, blob } from "./support.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const { STATUS_CODE } = ssh2.utils.sftp

const layer = blob("code", "v01", [{ path: "a.txt", content: "hello" }])
const doc = documentText("p", [layer])
const big = randomBytes(3 * 1024 * 1024)
const bigHash = createHash("sha256").update(big).digest("hex") as Sha256
// Several read windows long, so pooled read buffers are reused many times.
const huge = randomBytes(21 * 1024 * 1024 + 12345)
const hugeHash = createHash("sha256").update(huge).digest("hex") as Sha256
const shrunkHash = "5".repeat(64) as Sha256

/** What the server does with the next READ: answer it, or hold it and tell the test. */
let holdReads = false
let heldRead: (() => void) | undefined
/** Answer every third READ with only part of what was asked (servers may). */
let shortReads = false
const sftpChannels: Array<SFTPWrapper> = []
const conns = new Set<Connection>()
let server: ssh2.Server
let port = 0
let endlessServed = 0

const files = new Map<string, Buffer>([
  ["/configs/p.json", Buffer.from(doc)],
  [`/files/${layer.hash}`, Buffer.from(layer.bytes)],
  [`/files/${bigHash}`, big],
  [`/files/${hugeHash}`, huge],
  [`/files/${shrunkHash}`, big.subarray(0, 1000)]
])
/** Sizes FSTAT reports where they differ from the data (a file that shrank after the stat). */
const claimedSize = new Map<string, number>([[`/files/${shrunkHash}`, 5000]])

beforeAll(async () => {
  const hostKey = generateEd25519()
  server = new ssh2.Server({ hostKeys: [hostKey.private], ident: "OpenSSH_9.2 test" }, (conn) => {
    conns.add(conn)
    conn.on("close", () => conns.delete(conn))
    conn.on("error", () => {})
    conn.on("authentication", (ctx) => ctx.accept())
    conn.on("ready", () =>
      conn.on("session", (accept) =>
        accept().on("sftp", (acceptSftp) => {
          const sftp = acceptSftp()
          sftpChannels.push(sftp)
          const open = new Map<number, { data: Buffer; size: number; endless?: boolean }>()
          let next = 0
          let reads = 0
          sftp.on("OPEN", (id, name) => {
            if (name === "/configs/endless.json") {
              // A hostile registry: FSTAT says nothing (size 0), READ never reaches an end.
              const h = Buffer.alloc(4)
              h.writeUInt32BE(next)
              open.set(next++, { data: Buffer.alloc(0), size: 0, endless: true })
              return sftp.handle(id, h)
            }
            const data = files.get(name)
            if (data === undefined) return sftp.status(id, STATUS_CODE.NO_SUCH_FILE)
            const h = Buffer.alloc(4)
            h.writeUInt32BE(next)
            open.set(next++, { data, size: claimedSize.get(name) ?? data.length })
            sftp.handle(id, h)
          })
          sftp.on("FSTAT", (id, h) => sftp.attrs(id, { size: open.get(h.readUInt32BE(0))!.size } as never))
          sftp.on("READ", (id, h, off, len) => {
            if (holdReads) {
              heldRead?.()
              return
            }
            const { data, endless } = open.get(h.readUInt32BE(0))!
            if (endless) {
              endlessServed += len
              return sftp.data(id, Buffer.alloc(len, 0x20))
            }
            if (off >= data.length) return sftp.status(id, STATUS_CODE.EOF)
            const n = shortReads && ++reads % 3 === 0 ? Math.max(1, len >> 1) : len
            sftp.data(id, data.subarray(off, Math.min(data.length, off + n)))
          })
          sftp.on("CLOSE", (id) => sftp.status(id, STATUS_CODE.OK))
        })
      )
    )
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as AddressInfo).port
})

const clients: Array<Client> = []
afterEach(() => {
  holdReads = false
  heldRead = undefined
  shortReads = false
  for (const c of clients.splice(0)) c.end()
})
afterAll(async () => {
  for (const c of conns) c.end()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

const connect = async () => {
  const key = generateEd25519()
  const client = await connectClient(port, "deploy-agent", { privateKey: key.private })
  clients.push(client)
  const sftp = await clientSftp(client)
  return { client, sftp, session: makeSession(sftp) }
}

/** Runs `eff`, turning "still waiting after 5 s" into a result the test can assert on. */
const outcome = <A, E extends { message: string }>(eff: Effect.Effect<A, E>) =>
  Effect.runPromise(
    eff.pipe(
      Effect.as("succeeded"),
      Effect.catchAll((e) => Effect.succeed(`failed: ${e.message}`)),
      Effect.timeoutTo({ duration: "5 seconds", onTimeout: () => "still waiting", onSuccess: (s) => s })
    )
  )

/** A download's bytes, copied out of the pooled pieces; `delayMs` makes a slow sink. */
const collect = <E>(download: (sink: Sink<never>) => Effect.Effect<void, E>, delayMs = 0) =>
  Effect.suspend(() => {
    const parts: Array<Buffer> = []
    let batches = 0
    return download((pieces) => {
      batches++
      // Copied at once: the buffers are reused after the sink's Effect ends, which the delay lets happen later.
      for (const piece of pieces) parts.push(Buffer.from(piece))
      return delayMs > 0 ? Effect.sleep(`${delayMs} millis`) : Effect.void
    }).pipe(Effect.map(() => Object.assign(Buffer.concat(parts), { batches })))
  })

describe("RegistryClient session", () => {
  it("refuses a configuration document larger than the cap, having read no more than it", async () => {
    const { sftp } = await connect()
    const session = makeSession(sftp, { maxDocumentBytes: 1024 * 1024 })
    endlessServed = 0
    const r = await outcome(session.document("endless"))
    expect(r).toMatch(/^failed: configuration "endless" from the registry is larger than 1048576 bytes/)
    expect(endlessServed).toBeLessThanOrEqual(1024 * 1024 + 256 * 1024)
    expect(MAX_DOCUMENT_BYTES).toBe(16 * 1024 * 1024)

  })

  it("reads the document and a blob on a live session", async () => {
    const { session } = await connect()
    const d = await Effect.runPromise(session.document("p"))
    expect(d.Hash).toBe(JSON.parse(doc).Hash)
    const bytes = await Effect.runPromise(collect((sink) => session.download(bigHash, sink)))
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(bigHash)
  })

  it("delivers a file of several read windows in order through reused buffers, with short reads and a slow sink", async () => {
    const { session } = await connect()
    shortReads = true
    const bytes = await Effect.runPromise(collect((sink) => session.download(hugeHash, sink), 3))
    expect(bytes.length).toBe(huge.length)
    expect(bytes.equals(huge)).toBe(true)
    // Reads that arrive while the sink works are handed over together.
    expect(bytes.batches).toBeLessThan(Math.ceil(huge.length / (255 * 1024)))
  })

  it("fails when the file ends before the size it was opened with", async () => {
    const { session } = await connect()
    expect(await outcome(collect((sink) => session.download(shrunkHash, sink)))).toBe(
      `failed: downloading blob ${shrunkHash}: file ended at 1000, expected 5000 bytes`
    )
  })

  it("passes a sink's failure through unchanged and stops reading", async () => {
    const { session } = await connect()
    const exit = await Effect.runPromiseExit(session.download(hugeHash, () => Effect.fail("disk full" as const)))
    expect(exit).toMatchObject({ _tag: "Failure", cause: { _tag: "Fail", error: "disk full" } })
  })

  it("requests made after the connection closed fail at once instead of never answering", async () => {
    const { client, session } = await connect()
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
    for (const c of conns) c.end() // the registry goes away
    await closed
    expect(await outcome(session.document("p"))).toBe('failed: cannot read configuration "p": connection closed')
    expect(await outcome(collect((sink) => session.download(layer.hash as Sha256, sink)))).toBe(`failed: downloading blob ${layer.hash}: connection closed`)
  })

  it("a download waiting on the registry fails when the connection drops", async () => {
    const { session } = await connect()
    holdReads = true
    const reached = new Promise<void>((resolve) => (heldRead = resolve))
    const download = outcome(collect((sink) => session.download(bigHash, sink)))
    await reached
    for (const c of conns) c.end()
    expect(await download).toMatch(/^failed: downloading blob [0-9a-f]{64}: /)
  })

  it("a request made after the registry closed only the SFTP channel fails at once", async () => {
    const { sftp, session } = await connect()
    await Effect.runPromise(session.document("p"))
    const ended = new Promise<void>((resolve) => sftp.once("end", () => resolve()))
    sftpChannels.at(-1)!.end() // server-side CHANNEL_CLOSE; the connection stays up
    await ended
    expect(await outcome(session.document("p"))).toMatch(/^failed: cannot read configuration "p": /)
    expect(await outcome(collect((sink) => session.download(layer.hash as Sha256, sink)))).toMatch(/^failed: downloading blob /)
  })
})
