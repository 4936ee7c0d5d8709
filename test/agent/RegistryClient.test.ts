// The agent's SFTP session against a scripted in-process ssh2 server: every request must settle when
// the session is gone (ssh2 drops requests on a closed channel without calling back).
import { Effect, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { AddressInfo } from "node:net"
import ssh2 from "ssh2"
import type { Client, Connection, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, afterEach, describe, expect, it } from "vitest"
import { makeSession } from "../../src/agent/RegistryClient.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { clientSftp, connectClient } from "../support/registry.js"
import { documentText, blob } from "./support.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const { STATUS_CODE } = ssh2.utils.sftp

const layer = blob("code", "v01", [{ path: "a.txt", content: "hello" }])
const doc = documentText("p", [layer])
const big = randomBytes(3 * 1024 * 1024)
const bigHash = createHash("sha256").update(big).digest("hex") as Sha256

/** What the server does with the next READ: answer it, or hold it and tell the test. */
let holdReads = false
let heldRead: (() => void) | undefined
const sftpChannels: Array<SFTPWrapper> = []
const conns = new Set<Connection>()
let server: ssh2.Server
let port = 0

const files = new Map<string, Buffer>([
  ["/configs/p.json", Buffer.from(doc)],
  [`/files/${layer.hash}`, Buffer.from(layer.bytes)],
  [`/files/${bigHash}`, big]
])

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
          const open = new Map<number, Buffer>()
          let next = 0
          sftp.on("OPEN", (id, name) => {
            const data = files.get(name)
            if (data === undefined) return sftp.status(id, STATUS_CODE.NO_SUCH_FILE)
            const h = Buffer.alloc(4)
            h.writeUInt32BE(next)
            open.set(next++, data)
            sftp.handle(id, h)
          })
          sftp.on("FSTAT", (id, h) => sftp.attrs(id, { size: open.get(h.readUInt32BE(0))!.length } as never))
          sftp.on("READ", (id, h, off, len) => {
            if (holdReads) {
              heldRead?.()
              return
            }
            const data = open.get(h.readUInt32BE(0))!
            if (off >= data.length) return sftp.status(id, STATUS_CODE.EOF)
            sftp.data(id, data.subarray(off, Math.min(data.length, off + len)))
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
  return { client, sftp, session: makeSession(sftp, client) }
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

const collect = (s: Stream.Stream<Uint8Array, { message: string }>) =>
  Stream.runFold(s, Buffer.alloc(0), (acc, c) => Buffer.concat([acc, c]))

describe("RegistryClient session", () => {
  it("reads the document and a blob on a live session", async () => {
    const { session } = await connect()
    const d = await Effect.runPromise(session.document("p"))
    expect(d.Hash).toBe(JSON.parse(doc).Hash)
    const bytes = await Effect.runPromise(collect(session.download(bigHash)))
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(bigHash)
  })

  it("requests made after the connection closed fail at once instead of never answering", async () => {
    const { client, session } = await connect()
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()))
    for (const c of conns) c.end() // the registry goes away
    await closed
    expect(await outcome(session.document("p"))).toBe('failed: cannot read configuration "p": connection closed')
    expect(await outcome(collect(session.download(layer.hash as Sha256)))).toBe(`failed: downloading blob ${layer.hash}: connection closed`)
  })

  it("a download waiting on the registry fails when the connection drops", async () => {
    const { session } = await connect()
    holdReads = true
    const reached = new Promise<void>((resolve) => (heldRead = resolve))
    const download = outcome(collect(session.download(bigHash)))
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
    expect(await outcome(collect(session.download(layer.hash as Sha256)))).toMatch(/^failed: downloading blob /)
  })
})
