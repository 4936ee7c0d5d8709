// The operator's upload-only SFTP, in-process against the real Uploads staging area.
import { createHash, randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import { createRequire, syncBuiltinESMExports } from "node:module"
import * as path from "node:path"
import type { Client, SFTPWrapper } from "ssh2"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Sha256 } from "../../src/domain/Names.js"
import { failureMessage, isDiskFull } from "../../src/registry/SftpUpload.js"
import { StorageError } from "../../src/domain/Errors.js"
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
  srv = await startInProcess({ limits: { maxUpload: 2 ** 30 } })
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

  it("at most 64 uploads open per session, even when the OPENs arrive at once; all discarded when it drops", async () => {
    const { c, s } = await session()
    const before = await listDir(srv.dir, "uploads")
    const results = await Promise.allSettled(Array.from({ length: 70 }, (_, i) => p<Buffer>((cb) => s.open(`f${i}`, "w", cb))))
    const refused = results.filter((r) => r.status === "rejected")
    expect(refused).toHaveLength(6)
    expect(String((refused[0] as PromiseRejectedResult).reason.message)).toContain("too many open files")
    expect((await listDir(srv.dir, "uploads")).filter((n) => !before.includes(n))).toHaveLength(64)
    c.end()
    expect(await waitFor(async () => (await listDir(srv.dir, "uploads")).every((n) => before.includes(n)))).toBe(true)
  })

  it("answers what `put` asks, and refuses reads, removes and renames", async () => {
    const { s } = await session()
    expect(await p<string>((cb) => s.realpath(".", cb))).toBe("/")
    expect((await p<{ isDirectory(): boolean }>((cb) => s.stat("/", cb))).isDirectory()).toBe(true)
    await expect(p((cb) => s.stat("/code_v1.tar.gz", cb))).rejects.toMatchObject({ code: 2 })
    expect(await p((cb) => s.readdir("/", cb))).toEqual([]) // an empty directory: mirrors list the target first
    const denied = { code: 3 }
    await expect(p((cb) => s.open("/x", "r", cb))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.unlink("/x", (e) => cb(e)))).rejects.toMatchObject(denied)
    await expect(p((cb) => s.rename("/x", "/y", (e) => cb(e)))).rejects.toMatchObject(denied)
    // an open upload can be fstat'ed and fsetstat'ed (OpenSSH does both)
    const h = await p<Buffer>((cb) => s.open("z", "w", cb))
    await p<void>((cb) => s.write(h, Buffer.from("abc"), 0, 3, 0, (e) => cb(e)))
    expect((await p<{ size: number }>((cb) => s.fstat(h, cb))).size).toBe(3)
    await p<void>((cb) => s.fchmod(h, 0o644, (e) => cb(e)))
    await p<void>((cb) => s.close(h, (e) => cb(e)))
    expect((await uploaded(sha(Buffer.from("abc")))).toString()).toBe("abc")
  })

  it("accepts every uploader's OPEN flags (READ|WRITE|CREAT|TRUNC: the Go library, paramiko 'w+'); a READ on it fails cleanly", async () => {
    const { s } = await session()
    for (const flags of ["w+", "r+", "wx", "a", "a+"]) {
      const h = await p<Buffer>((cb) => s.open(`/flags-${flags}`, flags as "w", cb))
      await p<void>((cb) => s.write(h, Buffer.from(flags), 0, flags.length, 0, (e) => cb(e)))
      await expect(p((cb) => s.read(h, Buffer.alloc(10), 0, 10, 0, (e, n) => cb(e, n)))).rejects.toMatchObject({ code: 3 })
      await p<void>((cb) => s.close(h, (e) => cb(e)))
      expect((await uploaded(sha(Buffer.from(flags)))).toString()).toBe(flags)
    }
  })

  it("answers STAT and SETSTAT sent after writing with what was written, also on another connection (paramiko, rclone)", async () => {
    const { s } = await session()
    const data = randomBytes(1000)
    await p<void>((cb) => s.writeFile("/dir/sub/layer.tar.gz", data, (e) => cb(e)))
    for (const t of [s, (await session()).s]) {
      const st = await p<{ size: number; isFile(): boolean }>((cb) => t.stat("/dir/sub/layer.tar.gz", cb))
      expect(st.isFile()).toBe(true)
      expect(st.size).toBe(1000)
      await p<void>((cb) => t.utimes("/dir/sub/layer.tar.gz", new Date(), new Date(), (e) => cb(e)))
      expect((await p<{ isDirectory(): boolean }>((cb) => t.stat("/dir/sub", cb))).isDirectory()).toBe(true)
    }
    expect((await uploaded(sha(data))).equals(data)).toBe(true)
  })

  it("takes a folder: MKDIR is accepted and the directory then STATs as an empty writable directory", async () => {
    const { s } = await session()
    await expect(p((cb) => s.stat("/tree", cb))).rejects.toMatchObject({ code: 2 })
    await p<void>((cb) => s.mkdir("/tree", (e) => cb(e)))
    await p<void>((cb) => s.mkdir("/tree/a", (e) => cb(e)))
    const st = await p<{ isDirectory(): boolean; mode: number }>((cb) => s.stat("/tree/a", cb))
    expect(st.isDirectory()).toBe(true)
    expect(st.mode & 0o200).toBe(0o200)
    expect(await p((cb) => s.readdir("/tree/a", cb))).toEqual([])
    await p<void>((cb) => s.writeFile("/tree/a/x.tar.gz", "folder file", (e) => cb(e)))
    expect((await uploaded(sha(Buffer.from("folder file")))).toString()).toBe("folder file")
  })

  it("refuses a WRITE beyond -max-upload at once (a far offset is not a sparse giant), and the upload fails", async () => {
    const { s } = await session()
    const h = await p<Buffer>((cb) => s.open("/far", "w", cb))
    await expect(p((cb) => s.write(h, Buffer.from("x"), 0, 1, 2 ** 34, (e) => cb(e)))).rejects.toThrow(/max-upload/)
    await expect(p((cb) => s.close(h, (e) => cb(e)))).rejects.toThrow(/max-upload/)
    const temps = (await listDir(srv.dir, "uploads")).filter((n) => n.startsWith(".tmp-"))
    expect(temps).toEqual([])
  })

  it("refuses a WRITE far beyond the end of what was written (a sparse file costs its whole size to hash)", async () => {
    const { s } = await session()
    const h = await p<Buffer>((cb) => s.open("/gap", "w", cb))
    await p<void>((cb) => s.write(h, Buffer.from("x"), 0, 1, 0, (e) => cb(e)))
    await expect(p((cb) => s.write(h, Buffer.from("x"), 0, 1, 2 ** 29, (e) => cb(e)))).rejects.toThrow(/too far/)
    await expect(p((cb) => s.close(h, (e) => cb(e)))).rejects.toThrow(/too far/)
  })
})

/** Makes fs.write fail with `code` for buffers full of 0xEE (the test's payload) while `f` runs. */
const failingWrites = async <A>(code: string, f: () => Promise<A>): Promise<A> => {
  const nodeFs = createRequire(import.meta.url)("node:fs") as typeof import("node:fs")
  const real = nodeFs.write
  const fake = (...args: Array<unknown>) => {
    const data = args[1]
    const cb = args[args.length - 1]
    if (Buffer.isBuffer(data) && data.length > 100 && data[0] === 0xee && data[data.length - 1] === 0xee && typeof cb === "function") {
      const err = Object.assign(new Error(`${code}: simulated`), { code })
      return void setImmediate(() => (cb as (e: Error) => void)(err))
    }
    return (real as (...a: Array<unknown>) => void)(...args)
  }
  nodeFs.write = fake as typeof real
  syncBuiltinESMExports()
  try {
    return await f()
  } finally {
    nodeFs.write = real
    syncBuiltinESMExports()
  }
}

describe("upload failures the operator can act on", () => {
  it("maps ENOSPC/EDQUOT, also as a StorageError's cause, to 'registry is out of disk space'", () => {
    const enospc = Object.assign(new Error("no space"), { code: "ENOSPC" })
    expect(isDiskFull(enospc)).toBe(true)
    expect(isDiskFull(Object.assign(new Error("quota"), { code: "EDQUOT" }))).toBe(true)
    expect(isDiskFull(new StorageError({ reason: "cannot record", cause: enospc }))).toBe(true)
    expect(isDiskFull(Object.assign(new Error("io"), { code: "EIO" }))).toBe(false)
    expect(failureMessage(enospc)).toBe("registry is out of disk space")
    expect(failureMessage(new Error("anything else"))).toBe("cannot store upload")
  })

  for (const [code, message] of [["ENOSPC", "registry is out of disk space"], ["EIO", "cannot store upload"]] as const) {
    it(`a WRITE failing with ${code} answers "${message}", also at CLOSE, and leaves no temp file`, async () => {
      const { s } = await session()
      const before = await listDir(srv.dir, "uploads")
      const data = Buffer.alloc(64 * 1024, 0xee)
      await failingWrites(code, async () => {
        const h = await p<Buffer>((cb) => s.open("full", "w", cb))
        await expect(p<void>((cb) => s.write(h, data, 0, data.length, 0, (e) => cb(e)))).rejects.toMatchObject({ message })
        // later writes of the same upload say the same, and CLOSE reports it too
        await expect(p<void>((cb) => s.write(h, data, 0, 10, 0, (e) => cb(e)))).rejects.toMatchObject({ message })
        await expect(p<void>((cb) => s.close(h, (e) => cb(e)))).rejects.toMatchObject({ message })
      })
      expect(await waitFor(async () => (await listDir(srv.dir, "uploads")).every((n) => before.includes(n)))).toBe(true)
      // the session still works for the next upload
      const ok = Buffer.from("fine")
      const h2 = await p<Buffer>((cb) => s.open("ok", "w", cb))
      await p<void>((cb) => s.write(h2, ok, 0, ok.length, 0, (e) => cb(e)))
      await p<void>((cb) => s.close(h2, (e) => cb(e)))
      expect((await uploaded(sha(ok))).toString()).toBe("fine")
    })
  }
})
