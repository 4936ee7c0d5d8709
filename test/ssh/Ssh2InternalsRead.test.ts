// The direct DATA path's framing (src/ssh/Ssh2InternalsRead.ts) on ssh2's real SFTP client object: replies
// for reads, EOF statuses, DATA for requests that named no buffer and for unknown ids, cut into payloads at
// every kind of boundary, must reach each callback exactly as ssh2's own parser delivers them.
import { createHash, randomBytes } from "node:crypto"
import type { SFTPWrapper } from "ssh2"
import ssh2Sftp from "ssh2/lib/protocol/SFTP.js"
import { describe, expect, it } from "vitest"
import { fastPaths } from "../../src/ssh/Ssh2Internals.js"
import { directDataReplies } from "../../src/ssh/Ssh2InternalsRead.js"

const packet = (type: number, body: Buffer) => {
  const b = Buffer.alloc(5 + body.length)
  b.writeUInt32BE(1 + body.length, 0)
  b[4] = type
  body.copy(b, 5)
  return b
}
const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
const str = (b: Buffer) => Buffer.concat([u32(b.length), b])
const VERSION = packet(2, u32(3))
const data = (id: number, bytes: Buffer) => packet(103, Buffer.concat([u32(id), str(bytes)]))
const status = (id: number, code: number) => packet(101, Buffer.concat([u32(id), u32(code), str(Buffer.from("eof")), str(Buffer.alloc(0))]))
const handle = (id: number) => packet(102, Buffer.concat([u32(id), str(Buffer.from("h"))]))

/** A client-mode SFTP session of ssh2 on a stand-in channel that accepts whatever it sends. */
const session = (): SFTPWrapper => {
  const SFTP = ssh2Sftp.SFTP as new (client: unknown, chan: unknown, cfg: unknown) => SFTPWrapper & { push: (d: Buffer | null) => void }
  const protocol = { channelData: () => undefined, channelWindowAdjust: () => undefined, exitStatus: () => undefined, channelEOF: () => undefined }
  const chan = { type: "session", incoming: { id: 0, window: 1 << 30, packetSize: 1 << 20, state: "open" }, outgoing: { id: 0, window: 1 << 30, packetSize: 1 << 20, state: "open" } }
  const s = new SFTP({ _protocol: protocol }, chan, {})
  s.push(VERSION)
  return s
}
const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex").slice(0, 16)
const push = (s: SFTPWrapper, d: Buffer) => (s as unknown as { push: (d: Buffer) => void }).push(d)

/** Cuts `stream` into payloads of 1 to `max` bytes. */
const cut = (stream: Buffer, max: number, rnd: () => number): Array<Buffer> => {
  const out: Array<Buffer> = []
  for (let at = 0; at < stream.length;) {
    const n = 1 + Math.floor(rnd() * max)
    out.push(stream.subarray(at, at + n))
    at += n
  }
  return out
}

/** Issues the same requests on a session, feeds it `payloads`, returns what each callback got, in order. */
const run = (direct: boolean, replies: (ids: ReadonlyArray<number>) => Buffer, max: number, seed: number) => {
  const s = session()
  if (direct) directDataReplies(s)
  const got: Array<string> = []
  const h = Buffer.from("h")
  const ids: Array<number> = []
  const id = () => (s as unknown as { _writeReqid: number })._writeReqid
  const bufs = [Buffer.alloc(3000), Buffer.alloc(500), Buffer.alloc(100), Buffer.alloc(4000)]
  bufs.forEach((buf, i) => {
    s.read(h, buf, 0, buf.length, i * 1000, (err, n, d) => got.push(err ? `read${i} err ${(err as { code?: number }).code}` : `read${i} ${n} ${digest(d.subarray(0, n))}`))
    ids.push(id())
  })
  s.open("x", "r", (err, hd) => got.push(err ? "open err" : `open ${hd.toString()}`))
  ids.push(id())
  let x = seed
  const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x80000000)
  for (const p of cut(replies(ids), max, rnd)) push(s, p)
  return got
}

describe("direct DATA replies", () => {
  const a = randomBytes(3000)
  const b = randomBytes(77)
  const c = randomBytes(4000)
  const replies = (ids: ReadonlyArray<number>) =>
    Buffer.concat([
      data(ids[0]!, a), // a full read
      data(9999, randomBytes(50)), // an id nobody asked for: ssh2 skips it
      status(ids[1]!, 1), // EOF
      handle(ids[4]!), // a reply of another kind in between
      packet(201, u32(12345)), // one shorter than a DATA header (an EXTENDED_REPLY nobody asked for)
      data(ids[2]!, b), // a short read (77 of 100)
      data(ids[3]!, c)
    ])

  it("every callback gets what ssh2's own parser gives it, however the payloads are cut", () => {
    const expected = run(false, replies, 1 << 20, 1)
    expect(expected).toEqual([
      `read0 3000 ${digest(a)}`,
      `read1 0 ${digest(Buffer.alloc(0))}`, // ssh2 turns EOF into an empty read
      "open h",
      `read2 77 ${digest(b)}`,
      `read3 4000 ${digest(c)}`
    ])
    for (const max of [1, 2, 5, 13, 14, 100, 4096, 1 << 20]) {
      for (let seed = 1; seed <= 20; seed++) {
        const before = fastPaths.directReads
        expect(run(true, replies, max, seed)).toEqual(expected)
        expect(fastPaths.directReads - before).toBe(3) // read1 was a STATUS, 9999 no request of ours
      }
    }
  })

  it("a session whose parser is inside a packet when the path is installed stays with ssh2's parser", () => {
    const s = session()
    const got: Array<string> = []
    const buf = Buffer.alloc(10)
    s.read(Buffer.from("h"), buf, 0, 10, 0, (err, n) => got.push(err ? "err" : `read ${n}`))
    const reply = data((s as unknown as { _writeReqid: number })._writeReqid, Buffer.from("0123456789"))
    push(s, reply.subarray(0, 7))
    directDataReplies(s)
    const before = fastPaths.directReads
    push(s, reply.subarray(7))
    expect(got).toEqual(["read 10"])
    expect(buf.toString()).toBe("0123456789")
    expect(fastPaths.directReads).toBe(before)
  })
})
