// The operator's upload-only SFTP, in-process against the real Uploads staging area.
import { createHash, randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import type { Client, SFTPWrapper } from "ssh2"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Sha256 } from "../../src/domain/Names.js"
import { Uploads } from "../../src/registry/Uploads.js"
import { clientSftp, connectClient, tempDir } from "../support/registry.js"
import { type InProcessServer, listDir, startInProcess } from "../support/sshServer.js"

let srv: InProcessServer
let local: string
const clients: Array<Client> = []
const session = async (): Promise<{ c: Client; s: SFTPWrapper }> => {
  const c = await connectClient(srv.port, "alice", { privateKey: srv.operator.privateKey })
  clients.push(c)
  return { c, s: await clientSftp(c) }
}
beforeAll(async () => {
  srv = await startInProcess()
  local = await tempDir("upload-src-")
})
afterAll(async () => {
  for (const c of clients) c.end()
  await srv.close()
  await fs.rm(local, { recursive: true, force: true })
})

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))
const uploaded = async (hash: string) => fs.readFile(path.join(srv.dir, "uploads", hash))
const waitFor = async (cond: () => Promise<boolean>) => {
  for (let i = 0; i < 100; i++) {
    if (await cond()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}

describe("upload-only SFTP", () => {
  it("advertises limits@openssh.com, so clients use 255 KiB requests", async () => {
    const { s } = await session()
    const internals = s as unknown as { _extensions: Record<string, string>; _maxWriteLen: number; _maxReadLen: number }
    expect(internals._extensions["limits@openssh.com"]).toBe("1")
    expect(internals._maxWriteLen).toBe(255 * 1024)
    expect(internals._maxReadLen).toBe(255 * 1024)
  })

  it("fastPut (many requests in flight, possibly out of order) lands as a claimable upload under its sha256", async () => {
    const data = randomBytes(6 * 1024 * 1024 + 123)
    const file = path.join(local, "big.bin")
    await fs.writeFile(file, data)
    const { s } = await session()
    await p<void>((cb) => s.fastPut(file, "/whatever/name.tar.gz", { concurrency: 64, chunkSize: 32768 }, (e) => cb(e)))
    expect(sha(await uploaded(sha(data)))).toBe(sha(data))
    expect(await srv.run(Effect.flatMap(Uploads, (u) => u.find(sha(data) as Sha256)))).toContain(sha(data))
    expect((await listDir(srv.dir, "uploads")).filter((n) => n.startsWith("."))).toEqual([])
  })

  it("hashes writes sent in reverse order, and overlapping rewrites, by what the file finally holds", async () => {
    const { s } = await session()
    const data = randomBytes(300_000)
    const h = await p<Buffer>((cb) => s.open("x", "w", cb))
    const chunks = [0, 100_000, 200_000].reverse()
    await Promise.all(chunks.map((off) => p<void>((cb) => s.write(h, data, off, 100_000, off, (e) => cb(e)))))
    await p<void>((cb) => s.close(h, (e) => cb(e)))
    expect(sha(await uploaded(sha(data)))).toBe(sha(data))

    const h2 = await p<Buffer>((cb) => s.open("y", "w", cb))
    const junk = randomBytes(1000)
    await p<void>((cb) => s.write(h2, junk, 0, 1000, 0, (e) => cb(e)))
    await p<void>((cb) => s.write(h2, data, 0, data.length, 0, (e) => cb(e))) // overwrites the junk
    await p<void>((cb) => s.close(h2, (e) => cb(e)))
    expect((await listDir(srv.dir, "uploads")).filter((n) => n === sha(junk))).toEqual([])
    expect(sha(await uploaded(sha(data)))).toBe(sha(data))
  })

  it("an empty file is an upload too", async () => {
    const { s } = await session()
    const h = await p<Buffer>((cb) => s.open("empty", "w", cb))
    await p<void>((cb) => s.close(h, (e) => cb(e)))
    expect((await uploaded(sha(Buffer.alloc(0)))).length).toBe(0)
  })

  it("a connection dropped before CLOSE leaves nothing behind (fault 9)", async () => {
    const { c, s } = await session()
    const before = await listDir(srv.dir, "uploads")
    const data = randomBytes(200_000)
    const h = await p<Buffer>((cb) => s.open("partial", "w", cb))
    await p<void>((cb) => s.write(h, data, 0, data.length, 0, (e) => cb(e)))
    expect((await listDir(srv.dir, "uploads")).some((n) => n.startsWith(".tmp-"))).toBe(true)
    c.end()
    expect(await waitFor(async () => (await listDir(srv.dir, "uploads")).every((n) => before.includes(n)))).toBe(true)
    await expect(srv.run(Effect.flatMap(Uploads, (u) => Effect.flip(u.find(sha(data) as Sha256))))).resolves.toMatchObject({ _tag: "UploadNotFound" })
  })

  it("answers what `put` asks, and refuses reads, listings, removes and renames", async () => {
    const { s } = await session()
    expect(await p<string>((cb) => s.realpath(".", cb))).toBe("/")
    expect((await p<{ isDirectory(): boolean }>((cb) => s.stat("/", cb))).isDirectory()).toBe(true)
    await expect(p((cb) => s.stat("/code_v1.tar.gz", cb))).rejects.toMatchObject({ code: 2 })
    const denied = { code: 3 }
    await expect(p((cb) => s.readdir("/", cb))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.open("/x", "r", cb))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.unlink("/x", (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.rename("/x", "/y", (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.mkdir("/d", (e) => cb(e)))).rejects.toMatchObject(denied)
    // an open upload can be fstat'ed and fsetstat'ed (OpenSSH does both)
    const h = await p<Buffer>((cb) => s.open("z", "w", cb))
    await p<void>((cb) => s.write(h, Buffer.from("abc"), 0, 3, 0, (e) => cb(e)))
    expect((await p<{ size: number }>((cb) => s.fstat(h, cb))).size).toBe(3)
    await p<void>((cb) => s.fchmod(h, 0o644, (e) => cb(e)))
    await p<void>((cb) => s.close(h, (e) => cb(e)))
    expect((await uploaded(sha(Buffer.from("abc")))).toString()).toBe("abc")
  })
})
