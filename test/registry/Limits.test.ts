// What the least-trusted key can make the registry hold (issue 12): in-process registries with small limits,
// raw ssh2 clients doing what an attacker would. Counts, never timings.
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import type { Client, SFTPWrapper } from "ssh2"
import { afterEach, describe, expect, it } from "vitest"
import { ConfigurationDocument, DocumentLayer } from "../../src/domain/Document.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { BlobStore } from "../../src/registry/BlobStore.js"
import { BUSY } from "../../src/registry/Limits.js"
import { clientExec, clientSftp, connectClient } from "../support/registry.js"
import { fixedStorage, type InProcessServer, startInProcess } from "../support/sshServer.js"

const require = createRequire(import.meta.url)
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex") as Sha256
const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A document of about 40 KiB (many layers), as a large configuration would be. */
const bigDoc = (name: string) =>
  new ConfigurationDocument({
    Name: name as never,
    Mtime: new Date("2026-01-02T03:04:05.678Z"),
    Hash: sha(Buffer.from(name)),
    Layers: Array.from({ length: 200 }, (_, i) =>
      new DocumentLayer({ Name: `layer${i}` as never, Version: "v01" as never, File: `files/${sha(Buffer.from(String(i)))}`, Hash: sha(Buffer.from(String(i))), Ctime: new Date("2026-01-01T00:00:00Z") }))
  })

let srv: InProcessServer | undefined
const clients: Array<Client> = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.end()
  await srv?.close()
  srv = undefined
})
const agent = async () => {
  const c = await connectClient(srv!.port, "deploy-agent", { privateKey: srv!.agent.privateKey })
  clients.push(c)
  return c
}
const operator = async () => {
  const c = await connectClient(srv!.port, "alice", { privateKey: srv!.operator.privateKey })
  clients.push(c)
  return c
}

/** Server-side SFTP sessions of this process, found as they send replies. */
const watchServerSessions = () => {
  const proto = (require("ssh2/lib/protocol/SFTP.js") as { SFTP: { prototype: Record<string, (...a: Array<unknown>) => unknown> } }).SFTP.prototype
  const seen = new Set<{ _buffer: Array<Buffer> }>()
  const originals = new Map<string, (...a: Array<unknown>) => unknown>()
  for (const m of ["status", "data", "handle", "attrs", "name"]) {
    const original = proto[m]!
    originals.set(m, original)
    proto[m] = function (this: { server?: boolean; _buffer: Array<Buffer> }, ...a: Array<unknown>) {
      if (this.server) seen.add(this)
      return original.apply(this, a)
    }
  }
  return {
    /** Bytes of replies ssh2 holds for the client's window, over all sessions. */
    queuedBytes: () => [...seen].reduce((n, s) => n + s._buffer.reduce((k, b) => k + b.length, 0), 0),
    restore: () => {
      for (const [m, f] of originals) proto[m] = f
    }
  }
}

describe("limits", () => {
  it("a client that pipelines READs and never adjusts its window gets a bounded queue; operators are still answered", async () => {
    const doc = bigDoc("big")
    srv = await startInProcess({ storage: fixedStorage([doc]) })
    const watch = watchServerSessions()
    try {
      const c = await agent()
      const s = await clientSftp(c)
      const h = await p<Buffer>((cb) => s.open("/configs/big.json", "r", cb))
      // From now on this client never lets the server send more than its first window.
      ;(c as unknown as { _protocol: { channelWindowAdjust: () => void } })._protocol.channelWindowAdjust = () => undefined
      for (let i = 0; i < 4000; i++) s.read(h, Buffer.alloc(32 * 1024), 0, 32 * 1024, 0, () => undefined)
      await sleep(1500)
      // Before: every reply queued (4000 × 32 KiB = 125 MiB). Now: one reply in ssh2's queue at most.
      expect(watch.queuedBytes()).toBeLessThan(1024 * 1024)
      const op = await operator()
      expect((await clientExec(op, "ls")).code).toBe(0)
    } finally {
      watch.restore()
    }
  })

  it("refuses session channels beyond -max-sessions on one connection", async () => {
    srv = await startInProcess({ limits: { maxSessions: 3 } })
    const c = await agent()
    const sessions = await Promise.allSettled(Array.from({ length: 5 }, () => clientSftp(c)))
    expect(sessions.filter((r) => r.status === "fulfilled")).toHaveLength(3)
    // a closed session frees its slot
    const first = (sessions[0] as PromiseFulfilledResult<SFTPWrapper>).value
    await new Promise<void>((resolve) => {
      first.once("close", () => resolve())
      first.end()
    })
    await expect(clientSftp(c)).resolves.toBeDefined()
  })

  it("limits connections per source address, and keeps a quarter of -max-conns for operators", async () => {
    srv = await startInProcess({ limits: { maxConnsPerSource: 3 } })
    await Promise.all([agent(), agent(), agent()])
    await expect(agent()).rejects.toThrow()
    for (const c of clients.splice(0)) c.end()
    await srv.close()
    srv = await startInProcess({ limits: { maxConns: 4 } })
    await Promise.all([agent(), agent(), agent()])
    // the fourth agent is closed after login; an operator still gets in
    const fourth = await agent().then((c) => clientSftp(c).then(() => "served", () => "closed"), () => "closed")
    expect(fourth).toBe("closed")
    for (const c of clients.splice(0)) c.end()
    await sleep(300)
    await Promise.all([agent(), agent(), agent()])
    expect((await clientExec(await operator(), "ls")).code).toBe(0)
  })

  it("caps handles per connection over all its sessions", async () => {
    srv = await startInProcess({ storage: fixedStorage([bigDoc("a")]), limits: { maxHandles: 10 } })
    const c = await agent()
    const [s1, s2] = await Promise.all([clientSftp(c), clientSftp(c)])
    const results = await Promise.allSettled(
      [s1!, s2!].flatMap((s) => Array.from({ length: 8 }, () => p<Buffer>((cb) => s.open("/configs/a.json", "r", cb))))
    )
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(10)
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult
    expect(String(refused.reason.message)).toContain("too many open files on this connection")
  })

  it("agents run out of file descriptors before operators do, and are told so, never 'no such file'", async () => {
    // fd limit 200: 100 connections, 36 descriptors for clients' files, of which agents may hold 27.
    srv = await startInProcess({ limits: { fdLimit: 200 } })
    const blob = randomBytes(1000)
    const tmp = path.join(srv.dir, "incoming")
    await fs.writeFile(tmp, blob)
    await srv.run(Effect.flatMap(BlobStore, (b) => b.adopt(tmp, sha(blob))))
    const sessions = await Promise.all([agent(), agent()].map(async (c) => clientSftp(await c)))
    const opens = await Promise.allSettled(
      sessions.flatMap((s) => Array.from({ length: 20 }, () => p<Buffer>((cb) => s.open(`/files/${sha(blob)}`, "r", cb))))
    )
    expect(opens.filter((r) => r.status === "fulfilled")).toHaveLength(27)
    const refused = opens.filter((r) => r.status === "rejected") as Array<PromiseRejectedResult>
    for (const r of refused) {
      expect(r.reason.code).not.toBe(2)
      expect(String(r.reason.message)).toContain(BUSY)
    }
    // an operator still uploads
    const up = await clientSftp(await operator())
    await p<void>((cb) => up.writeFile("/x.tar.gz", "operator upload", (e) => cb(e)))
  })

  it("checks the handle limit before building a listing: 1000 pipelined OPENDIRs cost at most 64 builds", async () => {
    const docs = Array.from({ length: 20 }, (_, i) => bigDoc(`c${i}`))
    let built = 0
    const counting = fixedStorage(docs, { onDocument: () => built++ })
    srv = await startInProcess({ storage: counting })
    const s = await clientSftp(await agent())
    const results = await Promise.allSettled(Array.from({ length: 1000 }, () => p<Buffer>((cb) => s.opendir("/configs", cb))))
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(64)
    // Before: every OPENDIR built the listing (20 documents each) before the limit refused it: 20,000.
    expect(built).toBeLessThanOrEqual(64 * docs.length)
  })

  it("an SFTP session ends as sshd ends it: exit-status 0, then close", async () => {
    srv = await startInProcess()
    const s = await clientSftp(await operator())
    const exit = new Promise<unknown>((resolve) => s.once("exit", resolve))
    const closed = new Promise<void>((resolve) => s.once("close", () => resolve()))
    ;(s as unknown as { _protocol: { channelEOF: (id: number) => void } })._protocol.channelEOF((s as unknown as { outgoing: { id: number } }).outgoing.id)
    expect(await exit).toBe(0)
    await closed
  })
})
