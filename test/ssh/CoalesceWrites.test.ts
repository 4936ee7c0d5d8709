// holdUntilPeerSpeaks: a server's first writes wait for the client's first bytes and leave with the reply to
// them in one write; a client that waits for the server's version line still gets it, and logs in.
import * as net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { holdUntilPeerSpeaks } from "../../src/ssh/CoalesceWrites.js"
import { clientExec, connectClient } from "../support/registry.js"
import { type InProcessServer, startInProcess } from "../support/sshServer.js"

/** A TCP server whose connections go to `onSocket`; resolves with its port and a close function. */
const listen = (onSocket: (s: net.Socket) => void) =>
  new Promise<{ port: number; close: () => Promise<void> }>((resolve) => {
    const sockets = new Set<net.Socket>()
    const srv = net.createServer((s) => {
      sockets.add(s)
      onSocket(s)
    })
    srv.listen(0, "127.0.0.1", () =>
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        close: () =>
          new Promise((done) => {
            for (const s of sockets) s.destroy()
            srv.close(() => done())
          })
      })
    )
  })

/** Counts the socket's calls into its handle: one per write syscall (_write for one chunk, _writev for several). */
const countWrites = (s: net.Socket) => {
  const counts = { write: 0, writev: 0 }
  const sock = s as unknown as { _write: (...a: Array<unknown>) => void; _writev: (...a: Array<unknown>) => void }
  const w = sock._write.bind(s)
  const wv = sock._writev.bind(s)
  sock._write = (...a) => (counts.write++, w(...a))
  sock._writev = (...a) => (counts.writev++, wv(...a))
  return counts
}

const readUntil = (c: net.Socket, want: string) =>
  new Promise<string>((resolve) => {
    let got = ""
    c.on("data", (d: Buffer) => {
      got += d.toString()
      if (got.length >= want.length) resolve(got)
    })
  })

describe("holdUntilPeerSpeaks", () => {
  it("sends the greeting with the reply to the peer's first bytes, in one write", async () => {
    let counts = { write: 0, writev: 0 }
    let heldBytes = -1
    const srv = await listen((s) => {
      counts = countWrites(s)
      holdUntilPeerSpeaks(s, 60_000)
      s.write("HELLO ")
      heldBytes = s.writableLength // corked: nothing has left
      // The protocol's listener comes after the hold's, as ssh2's does.
      queueMicrotask(() => s.on("data", () => s.write("REPLY")))
    })
    try {
      const c = net.connect(srv.port, "127.0.0.1")
      await new Promise((r) => c.once("connect", r))
      const got = readUntil(c, "HELLO REPLY")
      c.write("CLIENT")
      expect(await got).toBe("HELLO REPLY")
      expect(heldBytes).toBe(6)
      expect(counts).toEqual({ write: 0, writev: 1 })
      c.destroy()
    } finally {
      await srv.close()
    }
  })

  it("sends the greeting alone to a peer that waits for it", async () => {
    const srv = await listen((s) => {
      holdUntilPeerSpeaks(s, 20)
      s.write("HELLO")
    })
    try {
      const c = net.connect(srv.port, "127.0.0.1")
      expect(await readUntil(c, "HELLO")).toBe("HELLO")
      c.destroy()
    } finally {
      await srv.close()
    }
  })
})

describe("the registry's SSH listener", () => {
  let srv: InProcessServer
  beforeAll(async () => {
    srv = await startInProcess()
  })
  afterAll(async () => {
    await srv.close()
  })

  it("logs in a client that sends its version line only after the server's (as PuTTY may)", async () => {
    const sock = net.connect(srv.port, "127.0.0.1")
    sock.setNoDelay(true)
    const banner = await new Promise<Buffer>((resolve) => sock.once("data", resolve))
    expect(banner.toString()).toMatch(/^SSH-2\.0-deploy-registry\r\n/)
    sock.pause()
    sock.unshift(banner) // the ssh2 client reads it as if it had just arrived, then sends its own
    const c = await connectClient(srv.port, "alice", { privateKey: srv.operator.privateKey, sock })
    try {
      expect(await clientExec(c, "components")).toEqual({ stdout: "ran components\n", stderr: "", code: 0 })
    } finally {
      c.end()
    }
  })
})
