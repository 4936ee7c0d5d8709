// The deploy-agent's read-only view, in-process: a fixed Storage and the real BlobStore.
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { promises as fs, readdirSync, readlinkSync } from "node:fs"
import * as path from "node:path"
import type { Client, FileEntry, SFTPWrapper } from "ssh2"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest"
import { ConfigurationDocument, DocumentLayer, encodeDocument } from "../../src/domain/Document.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { BlobStore } from "../../src/registry/BlobStore.js"
import { resolveViewPath } from "../../src/registry/SftpAgentView.js"
import { clientSftp, connectClient, tempDir } from "../support/registry.js"
import { fixedStorage, type InProcessServer, startInProcess } from "../support/sshServer.js"

const require = createRequire(import.meta.url)
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex") as Sha256
const blob = randomBytes(3 * 1024 * 1024 + 17)
const small = Buffer.from("tiny blob\n")
const doc = (name: string, hash: Sha256) =>
  new ConfigurationDocument({
    Name: name as never,
    Mtime: new Date("2026-01-02T03:04:05.678Z"),
    Hash: sha(Buffer.from(hash + "\n")),
    Layers: [new DocumentLayer({ Name: "code" as never, Version: "v01" as never, File: `files/${hash}`, Hash: hash, Ctime: new Date("2026-01-01T00:00:00Z") })]
  })
const docs = [doc("B", sha(blob)), doc("a", sha(small)), doc("b", sha(blob))]

let srv: InProcessServer
let local: string
let client: Client
let s: SFTPWrapper
beforeAll(async () => {
  srv = await startInProcess({ storage: fixedStorage(docs, { names: ["B", "a", "b"] }) })
  local = await tempDir("agentview-")
  for (const b of [blob, small]) {
    const tmp = path.join(srv.dir, `incoming-${sha(b)}`)
    await fs.writeFile(tmp, b)
    await srv.run(Effect.flatMap(BlobStore, (store) => store.adopt(tmp, sha(b))))
  }
  client = await connectClient(srv.port, "deploy-agent", { privateKey: srv.agent.privateKey })
  s = await clientSftp(client)
})
afterAll(async () => {
  client?.end()
  await srv.close()
  await fs.rm(local, { recursive: true, force: true })
})

const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))
const readAll = async (file: string) => p<Buffer>((cb) => s.readFile(file, cb))

/** How many of this process's file descriptors are open on `file`. */
const fdsOpenOn = (file: string) =>
  readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file
    } catch {
      return false
    }
  }).length

describe("agent view", () => {
  it("lists /, /configs (in Storage's byte order) and /files", async () => {
    const names = async (dir: string) => (await p<Array<FileEntry>>((cb) => s.readdir(dir, cb))).map((e) => e.filename)
    expect(await names("/")).toEqual(["configs", "files"])
    expect(await names("/configs")).toEqual(["B.json", "a.json", "b.json"])
    expect(await names("/configs/")).toEqual(["B.json", "a.json", "b.json"])
    expect(await names("/files")).toEqual([sha(blob), sha(small)].sort())
  })

  it("serves the configuration document, however the path is spelled", async () => {
    const want = encodeDocument(docs[1]!)
    for (const spelling of ["/configs/a.json", "configs/a.json", "//configs//a.json", "/files/../configs/./a.json"]) {
      expect((await readAll(spelling)).toString()).toBe(want)
    }
    const st = await p<{ size: number; isFile(): boolean }>((cb) => s.stat("/configs/a.json", cb))
    expect(st.size).toBe(Buffer.byteLength(want))
    expect(st.isFile()).toBe(true)
  })

  it("serves blobs with positioned reads, and STATUS EOF at the end", async () => {
    const dest = path.join(local, "blob")
    await p<void>((cb) => s.fastGet(`/files/${sha(blob)}`, dest, { concurrency: 16, chunkSize: 261120 }, (e) => cb(e)))
    expect(sha(await fs.readFile(dest))).toBe(sha(blob))
    expect((await readAll(`/files/${sha(small)}`)).equals(small)).toBe(true)
    const h = await p<Buffer>((cb) => s.open(`/files/${sha(small)}`, "r", cb))
    const buf = Buffer.alloc(100)
    // the server answers STATUS EOF; ssh2's client reports that as 0 bytes read
    expect(await p<number>((cb) => s.read(h, buf, 0, 100, small.length, (e, n) => cb(e, n)))).toBe(0)
    expect((await p<{ size: number }>((cb) => s.fstat(h, cb))).size).toBe(small.length)
    await p<void>((cb) => s.close(h, (e) => cb(e)))
  })

  it("answers many reads in flight on one handle correctly, and a CLOSE sent right behind them", async () => {
    const h = await p<Buffer>((cb) => s.open(`/files/${sha(blob)}`, "r", cb))
    const chunk = 64 * 1024 + 3
    const offsets = Array.from({ length: 48 }, (_, i) => (i * 7919 * 13) % (blob.length - 10)).concat([blob.length - 5])
    const reads = offsets.map((off) => {
      const buf = Buffer.alloc(chunk)
      return p<number>((cb) => s.read(h, buf, 0, chunk, off, (e, n) => cb(e, n))).then((n) => ({ off, n, buf }))
    })
    // Not awaited: CLOSE is on the wire before most READ replies come back.
    const closed = p<void>((cb) => s.close(h, (e) => cb(e)))
    for (const { off, n, buf } of await Promise.all(reads)) {
      expect(n).toBe(Math.min(chunk, blob.length - off))
      expect(buf.subarray(0, n).equals(blob.subarray(off, off + n))).toBe(true)
    }
    await closed
  })

  it("serves a large blob intact to a client with many 255 KiB reads in flight (the agent's pattern)", async () => {
    // Replies are paced by the client's 2 MiB window (whenWindow, relying on ssh2 internals): when that
    // works, no reply takes ssh2's copying fallback (sftp.data queueing a 255 KiB copy). The session is opened
    // after the prototype is patched: the registry's reply wrappers (orderReplies) keep the method they found.
    const proto = (require("ssh2/lib/protocol/SFTP.js") as { SFTP: { prototype: { data: (...a: Array<unknown>) => unknown } } }).SFTP.prototype
    const data = proto.data
    let copied = 0
    proto.data = function (this: { server?: boolean }, ...a: Array<unknown>) {
      if (this.server && (a[1] as Buffer).length > 64 * 1024) copied++
      return data.apply(this, a)
    }
    onTestFinished(() => void (proto.data = data))
    const s = await clientSftp(client)
    onTestFinished(() => s.end())
    const big = randomBytes(24 * 1024 * 1024 + 5)
    const tmp = path.join(srv.dir, `incoming-${sha(big)}`)
    await fs.writeFile(tmp, big)
    await srv.run(Effect.flatMap(BlobStore, (store) => store.adopt(tmp, sha(big))))
    const h = await p<Buffer>((cb) => s.open(`/files/${sha(big)}`, "r", cb))
    const chunk = 261120
    const got = Buffer.alloc(big.length)
    const readAt = async (off: number) => {
      let done = 0
      const len = Math.min(chunk, big.length - off)
      while (done < len) {
        const n = await p<number>((cb) => s.read(h, got, off + done, len - done, off + done, (e, k) => cb(e, k)))
        expect(n).toBeGreaterThan(0)
        done += n
      }
    }
    let next = 0
    const inflight = new Set<Promise<void>>()
    while (next < big.length || inflight.size > 0) {
      while (next < big.length && inflight.size < 16) {
        const r: Promise<void> = readAt(next).then(() => void inflight.delete(r))
        inflight.add(r)
        next += chunk
      }
      await Promise.race(inflight)
    }
    await p<void>((cb) => s.close(h, (e) => cb(e)))
    expect(sha(got)).toBe(sha(big))
    expect(copied).toBeLessThanOrEqual(2)
  })

  it("answers in request order, whatever finishes first (scp writes in place and stops at the first gap)", async () => {
    const c = await connectClient(srv.port, "deploy-agent", { privateKey: srv.agent.privateKey })
    onTestFinished(() => void c.end())
    const s2 = await clientSftp(c)
    const h = await p<Buffer>((cb) => s2.open(`/files/${sha(blob)}`, "r", cb))
    const hd = await p<Buffer>((cb) => s2.open("/configs/a.json", "r", cb))
    // ssh2's client calls back as replies arrive: the order of callbacks is the order on the wire.
    const order: Array<number> = []
    const all: Array<Promise<void>> = []
    const track = (i: number, f: (cb: (e?: Error | null) => void) => void) =>
      all.push(new Promise((resolve) => f(() => {
        order.push(i)
        resolve()
      })))
    for (let i = 0; i < 120; i++) {
      const off = (i * 104729 * 31) % blob.length
      switch (i % 6) {
        case 0: track(i, (cb) => s2.read(h, Buffer.alloc(261120), 0, 261120, off, (e) => cb(e))); break
        case 1: track(i, (cb) => s2.stat(`/files/${sha(blob)}`, (e) => cb(e))); break
        case 2: track(i, (cb) => s2.realpath("/files", (e) => cb(e))); break
        case 3: track(i, (cb) => s2.read(hd, Buffer.alloc(100), 0, 100, 0, (e) => cb(e))); break
        case 4: track(i, (cb) => s2.read(h, Buffer.alloc(1000), 0, 1000, off, (e) => cb(e))); break
        case 5: track(i, (cb) => s2.fstat(h, (e) => cb(e))); break
      }
    }
    await Promise.all(all)
    expect(order).toEqual(order.slice().sort((a, b) => a - b))
  })

  it("never reaches outside the view", async () => {
    for (const trick of ["/files/../state.db", "/configs/../../etc/passwd", "/files/../host_key", "../host_key",
      "/configs/nope.json", "/files/abc", "/etc/passwd", "/configs/a.json\0"]) {
      await expect(p((cb) => s.open(trick, "r", cb)), trick).rejects.toHaveProperty("code")
      await expect(p((cb) => s.stat(trick, cb)), trick).rejects.toHaveProperty("code")
    }
    // `..` that stays inside the view names the directory, which cannot be opened as a file
    await expect(p((cb) => s.open(`/files/${sha(blob)}/..`, "r", cb))).rejects.toHaveProperty("code")
    expect(resolveViewPath("/files/../state.db")).toBeUndefined()
    expect(resolveViewPath(`/files/${"A".repeat(64)}`)).toBeUndefined()
  })

  it("refuses every change", async () => {
    const denied = { code: 3 }
    await expect(p((cb) => s.open("/configs/a.json", "w", cb))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.open("/files/new", "a", cb))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.mkdir("/files/x", (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.unlink(`/files/${sha(blob)}`, (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.rename("/configs/a.json", "/configs/c.json", (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.setstat("/configs/a.json", { mode: 0o777 }, (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.rmdir("/configs", (e) => cb(e)))).rejects.toMatchObject(denied)
    expect((await fs.readFile(path.join(srv.dir, "files", sha(blob)))).length).toBe(blob.length)
  })

  it("never leaks a blob's file descriptor: not for a refused open, not after the session ends", async () => {
    const blobPath = path.join(srv.dir, "files", sha(small))
    const openOnBlob = () => fdsOpenOn(blobPath)
    const c = await connectClient(srv.port, "deploy-agent", { privateKey: srv.agent.privateKey })
    const s2 = await clientSftp(c)
    const results = await Promise.allSettled(
      Array.from({ length: 70 }, () => p<Buffer>((cb) => s2.open(`/files/${sha(small)}`, "r", cb)))
    )
    const refused = results.filter((r) => r.status === "rejected")
    expect(refused).toHaveLength(6) // 64 handles per session
    expect(String((refused[0] as PromiseRejectedResult).reason.message)).toContain("too many open files")
    expect(openOnBlob()).toBe(64)
    c.end() // the session ends with every handle still open
    for (let i = 0; i < 100 && openOnBlob() > 0; i++) await new Promise((r) => setTimeout(r, 50))
    expect(openOnBlob()).toBe(0)
  })

  it("closes every blob fd when a session ends with reads queued and in flight", async () => {
    const blobPath = path.join(srv.dir, "files", sha(blob))
    const openOnBlob = () => fdsOpenOn(blobPath)
    const c = await connectClient(srv.port, "deploy-agent", { privateKey: srv.agent.privateKey })
    const s2 = await clientSftp(c)
    const handles = await Promise.all(Array.from({ length: 4 }, () => p<Buffer>((cb) => s2.open(`/files/${sha(blob)}`, "r", cb))))
    expect(openOnBlob()).toBe(4)
    // Far more reads than the server runs at once, then the connection goes away under them.
    for (const h of handles) {
      for (let off = 0; off < blob.length; off += 32 * 1024) s2.read(h, Buffer.alloc(32 * 1024), 0, 32 * 1024, off, () => undefined)
    }
    c.end()
    for (let i = 0; i < 100 && openOnBlob() > 0; i++) await new Promise((r) => setTimeout(r, 50))
    expect(openOnBlob()).toBe(0)
  })
})
