// The SSH edge in-process: auth matrix, what each role may open, exec and shell, time limits.
import * as net from "node:net"
import ssh2 from "ssh2"
import type { Client, ClientChannel, ParsedKey } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { fingerprint } from "../../src/ssh/Fingerprint.js"
import { clientExec, clientSftp, connectClient } from "../support/registry.js"
import { generateKey, type InProcessServer, startInProcess } from "../support/sshServer.js"

let srv: InProcessServer
const clients: Array<Client> = []
const connect = async (user: string, privateKey: string) => {
  const c = await connectClient(srv.port, user, { privateKey })
  clients.push(c)
  return c
}
beforeAll(async () => {
  srv = await startInProcess()
})
afterAll(async () => {
  for (const c of clients) c.end()
  await srv.close()
})

/** Signs with `signer` while claiming `claimed`: knowing a listed public key is not enough. */
class ImpostorAgent extends ssh2.BaseAgent<ParsedKey> {
  constructor(private readonly claimed: ParsedKey, private readonly signer: ParsedKey) {
    super()
  }
  getIdentities(cb: (err: Error | undefined, keys?: Array<ParsedKey>) => void) {
    cb(undefined, [this.claimed])
  }
  sign(_pub: ParsedKey, data: Buffer, options: unknown, cb?: (err: Error | undefined, sig?: Buffer) => void) {
    const done = (typeof options === "function" ? options : cb) as (err: Error | undefined, sig?: Buffer) => void
    done(undefined, this.signer.sign(data))
  }
}

const shell = (c: Client, pty: boolean): Promise<ClientChannel> =>
  new Promise((resolve, reject) => {
    const cb = (err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(ch))
    if (pty) c.shell({ term: "xterm", cols: 80, rows: 24 }, cb)
    else c.shell(false, cb)
  })

const collect = (ch: ClientChannel) =>
  new Promise<{ out: string; code: number | null }>((resolve) => {
    let out = ""
    let code: number | null = null
    ch.on("data", (b: Buffer) => (out += b.toString()))
    ch.on("exit", (c: number | null) => (code = c))
    ch.on("close", () => resolve({ out, code }))
  })

describe("authentication", () => {
  it("lets a listed operator key in and records its fingerprint and comment", async () => {
    const c = await connect("alice", srv.operator.privateKey)
    const r = await clientExec(c, "components")
    expect(r).toEqual({ stdout: "ran components\n", stderr: "", code: 0 })
    const call = srv.calls.at(-1)!
    expect(call.who.fingerprint).toBe(fingerprint(srv.operator.parsed.getPublicSSH()))
    expect(call.who.comment).toBe("alice@test")
    expect(call.who.user).toBe("alice")
  })

  it("refuses unknown keys, keys in the wrong file, and a listed key without its private half", async () => {
    const before = srv.calls.length
    const stranger = generateKey("mallory")
    await expect(connectClient(srv.port, "alice", { privateKey: stranger.privateKey })).rejects.toThrow(/authentication/i)
    await expect(connectClient(srv.port, "alice", { privateKey: srv.agent.privateKey })).rejects.toThrow(/authentication/i)
    await expect(connectClient(srv.port, "deploy-agent", { privateKey: srv.operator.privateKey })).rejects.toThrow(/authentication/i)
    const pubOnly = ssh2.utils.parseKey(srv.operator.publicLine) as ParsedKey
    await expect(connectClient(srv.port, "alice", { agent: new ImpostorAgent(pubOnly, stranger.parsed) })).rejects.toThrow(/authentication/i)
    // the same agent with the real key gets in: the test's agent is not what fails
    const ok = await connectClient(srv.port, "alice", { agent: new ImpostorAgent(pubOnly, srv.operator.parsed) })
    ok.end()
    await expect(connectClient(srv.port, "alice", { password: "secret" })).rejects.toThrow(/authentication/i)
    expect(srv.calls.length).toBe(before)
  })
})

describe("operator sessions", () => {
  it("exec: output on stdout, the command's status as exit status, stderr empty", async () => {
    const c = await connect("alice", srv.operator.privateKey)
    expect(await clientExec(c, "failing thing")).toEqual({ stdout: "failed failing thing\n", stderr: "", code: 1 })
    // several execs on one connection
    const rs = await Promise.all([clientExec(c, "a"), clientExec(c, "b"), clientExec(c, "c")])
    expect(rs.map((r) => r.stdout)).toEqual(["ran a\n", "ran b\n", "ran c\n"])
  })

  it("shell without a pty: prompt, one command per line, no echo, no colour codes", async () => {
    const c = await connect("alice", srv.operator.privateKey)
    const ch = await shell(c, false)
    const done = collect(ch)
    ch.end("components\nfail now\n\nexit\nnot run\n")
    const { out, code } = await done
    expect(out).toBe("> ran components\n> failed fail now\n> > \n")
    expect(code).toBe(0)
    expect(out).not.toMatch(/\x1b/)
  })

  it("shell with a pty: echo, editing, Ctrl-C, \\r\\n line ends; Ctrl-D ends", async () => {
    const c = await connect("alice", srv.operator.privateKey)
    const ch = await shell(c, true)
    const done = collect(ch)
    ch.write("showcmp\x1b[D\x1b[Do\x05 -name x\r")
    ch.write("delconf -name y\x03")
    ch.write("help\r")
    ch.write("\x04")
    const { out, code } = await done
    expect(code).toBe(0)
    expect(out).toContain("ran showcomp -name x\r\n")
    expect(out).toContain("^C\r\n> ")
    expect(out).toContain("ran help\r\n")
    expect(srv.calls.map((x) => x.line)).toContain("showcomp -name x")
    expect(srv.calls.map((x) => x.line)).not.toContain("delconf -name y")
  })

  it("port forwarding is refused", async () => {
    const c = await connect("alice", srv.operator.privateKey)
    await expect(new Promise((resolve, reject) => c.forwardOut("127.0.0.1", 0, "127.0.0.1", srv.port, (e, s) => (e ? reject(e) : resolve(s)))))
      .rejects.toThrow()
    await expect(new Promise((resolve, reject) => c.forwardIn("127.0.0.1", 0, (e, p) => (e ? reject(e) : resolve(p))))).rejects.toThrow()
  })
})

describe("agent sessions", () => {
  it("deploy-agent gets no exec, no shell, no pty", async () => {
    const before = srv.calls.length
    const c = await connect("deploy-agent", srv.agent.privateKey)
    await expect(clientExec(c, "components")).rejects.toThrow()
    await expect(shell(c, false)).rejects.toThrow()
    await expect(shell(c, true)).rejects.toThrow()
    // the sftp subsystem is still there
    const s = await clientSftp(c)
    expect(await new Promise((r) => s.realpath(".", (e, p) => r(e ?? p)))).toBe("/")
    expect(srv.calls.length).toBe(before)
  })
})

describe("time limits", () => {
  it("drops a connection that does not finish the handshake in time, and one older than -deadline", async () => {
    const short = await startInProcess({ handshakeTimeout: "300 millis", deadline: "600 millis" })
    try {
      const sock = net.connect({ host: "127.0.0.1", port: short.port })
      const closed = new Promise<boolean>((resolve) => sock.once("close", () => resolve(true)))
      sock.on("error", () => undefined)
      sock.resume() // read what the server sends, or "close" never comes
      sock.write("SSH-2.0-slowpoke\r\n") // and then nothing
      expect(await closed).toBe(true)

      const c = await connectClient(short.port, "alice", { privateKey: short.operator.privateKey })
      const ended = new Promise<boolean>((resolve) => c.once("close", () => resolve(true)))
      c.on("error", () => undefined)
      expect(await ended).toBe(true)
    } finally {
      await short.close()
    }
  })

  it("the handshake limit ends with the login: a logged-in connection outlives it", async () => {
    const short = await startInProcess({ handshakeTimeout: "300 millis" })
    try {
      const c = await connectClient(short.port, "alice", { privateKey: short.operator.privateKey })
      let closed = false
      c.once("close", () => (closed = true))
      c.on("error", () => undefined)
      await new Promise((r) => setTimeout(r, 900)) // three times the limit
      expect(closed).toBe(false)
      expect((await clientExec(c, "components")).code).toBe(0)
      c.end()
    } finally {
      await short.close()
    }
  })
})
