// A small in-process ssh2 server for unit tests of the client edge (Exec, Sftp, Connection):
// accepts any public key, answers a few scripted exec commands, and records SFTP writes
// (offsets, order, sha256) into memory. Not a registry: only what the client tests need.
import { createHash } from "node:crypto"
import type { AddressInfo } from "node:net"
import ssh2 from "ssh2"
import type { Connection, ServerChannel, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll } from "vitest"
import { connect } from "../../src/ssh/Connection.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp

export interface ReceivedFile {
  path: string
  bytes: number
  sha256: string
  /** every WRITE arrived at the offset right after the previous one */
  inOrder: boolean
  closed: boolean
  maxWrite: number
}

export interface FakeServer {
  port: number
  hostKeyBlob: Buffer
  files: Array<ReceivedFile>
  /** files served to READ requests, by path */
  served: Map<string, Buffer>
  /** exec commands received, in order */
  commands: Array<string>
  /** connections that ended, whatever the reason */
  closedConnections: () => number
  stop: () => Promise<void>
}

/** Answers one exec command (output to stdout, exit status), or undefined for the built-in script. */
export type ExecHandler = (command: string) => { output: string; code: number } | undefined

export const startFakeServer = async (options: { exec?: ExecHandler } = {}): Promise<FakeServer> => {
  const hostKey = generateEd25519()
  const parsed = ssh2.utils.parseKey(hostKey.private)
  if (parsed instanceof Error) throw parsed
  const hostKeyBlob = (Array.isArray(parsed) ? parsed[0] : parsed).getPublicSSH()
  const files: Array<ReceivedFile> = []
  const served = new Map<string, Buffer>()
  const commands: Array<string> = []
  const conns = new Set<Connection>()
  let closed = 0

  // The ident makes ssh2's client use 255 KiB requests, as it does with the registry.
  const server = new ssh2.Server({ hostKeys: [hostKey.private], ident: "OpenSSH_9.2 fake" }, (conn) => {
    conns.add(conn)
    conn.on("close", () => {
      conns.delete(conn)
      closed++
    })
    conn.on("error", () => {})
    conn.on("authentication", (ctx) => ctx.accept())
    conn.on("ready", () => {
      conn.on("session", (accept) => {
        const session = accept()
        session.on("exec", (acceptExec, _reject, info) => {
          const ch = acceptExec()
          commands.push(info.command)
          const answer = options.exec?.(info.command)
          if (answer === undefined) return runExec(ch, info.command)
          ch.write(answer.output)
          ch.exit(answer.code)
          ch.end()
        })
        session.on("sftp", (acceptSftp) => serveSftp(acceptSftp(), files, served, () => conn.end()))
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    hostKeyBlob,
    files,
    served,
    commands,
    closedConnections: () => closed,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.end()
        server.close(() => resolve())
      })
  }
}

const runExec = (ch: ServerChannel, command: string) => {
  const [verb, ...rest] = command.split(" ")
  const arg = rest.join(" ")
  switch (verb) {
    case "echo":
      ch.write(arg + "\n")
      ch.exit(0)
      break
    case "fail":
      ch.write(`error: ${arg}\n`)
      ch.exit(1)
      break
    case "stderr":
      ch.stderr.write(arg + "\n")
      ch.exit(0)
      break
    case "big": // many chunks of output
      for (let i = 0; i < Number(arg); i++) ch.write(`line ${i}\n`)
      ch.exit(0)
      break
    case "noexit":
      break // channel closed without an exit status
    case "hang":
      return // never answers
    default:
      ch.write(`unknown command "${verb}"\n`)
      ch.exit(1)
  }
  ch.end()
}

/** Writes to a path starting with "drop" make the server hang up once 1 MiB has arrived. */
const serveSftp = (sftp: SFTPWrapper, files: Array<ReceivedFile>, served: Map<string, Buffer>, hangUp: () => void) => {
  let nextHandle = 0
  const writes = new Map<number, { file: ReceivedFile; hash: ReturnType<typeof createHash> }>()
  const reads = new Map<number, Buffer>()
  let readCount = 0
  const handleOf = (buf: Buffer) => buf.readUInt32BE(0)
  const makeHandle = () => {
    const h = Buffer.alloc(4)
    h.writeUInt32BE(nextHandle++)
    return h
  }
  sftp.on("OPEN", (reqid, filename, flags) => {
    const h = makeHandle()
    if (flags & OPEN_MODE.WRITE) {
      const file: ReceivedFile = { path: filename, bytes: 0, sha256: "", inOrder: true, closed: false, maxWrite: 0 }
      files.push(file)
      writes.set(handleOf(h), { file, hash: createHash("sha256") })
    } else {
      const data = served.get(filename)
      if (data === undefined) return sftp.status(reqid, STATUS_CODE.NO_SUCH_FILE)
      reads.set(handleOf(h), data)
    }
    sftp.handle(reqid, h)
  })
  sftp.on("WRITE", (reqid, handle, offset, data) => {
    const w = writes.get(handleOf(handle))
    if (w === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE)
    if (offset !== w.file.bytes) w.file.inOrder = false
    else w.hash.update(data)
    w.file.bytes = Math.max(w.file.bytes, offset + data.length)
    w.file.maxWrite = Math.max(w.file.maxWrite, data.length)
    if (w.file.path.startsWith("drop") && w.file.bytes > 1024 * 1024) return hangUp()
    sftp.status(reqid, STATUS_CODE.OK)
  })
  sftp.on("READ", (reqid, handle, offset, length) => {
    const data = reads.get(handleOf(handle))
    if (data === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE)
    if (offset >= data.length) return sftp.status(reqid, STATUS_CODE.EOF)
    // Serve short reads now and then, as servers may.
    const n = Math.min(length, data.length - offset, ++readCount % 5 === 0 ? Math.max(1, length >> 1) : length)
    sftp.data(reqid, data.subarray(offset, offset + n))
  })
  sftp.on("FSTAT", (reqid, handle) => {
    const data = reads.get(handleOf(handle))
    if (data === undefined) return sftp.status(reqid, STATUS_CODE.FAILURE)
    sftp.attrs(reqid, { mode: 0o100644, uid: 0, gid: 0, size: data.length, atime: 0, mtime: 0 })
  })
  sftp.on("CLOSE", (reqid, handle) => {
    const w = writes.get(handleOf(handle))
    if (w !== undefined) {
      w.file.closed = true
      w.file.sha256 = w.hash.digest("hex")
      writes.delete(handleOf(handle))
    }
    reads.delete(handleOf(handle))
    sftp.status(reqid, STATUS_CODE.OK)
  })
  sftp.on("end", () => sftp.end())
}

/** A scoped client connection to `server` (any key is accepted; the host key is checked exactly). */
export const connectFake = (server: FakeServer, privateKey: string | Buffer = generateEd25519().private) =>
  connect({
    host: "127.0.0.1",
    port: server.port,
    username: "op",
    privateKey,
    verifyHostKey: (blob) => blob.equals(server.hostKeyBlob),
    hostKeyRefused: (seen) => `refused ${seen}`
  })

/** Starts a fake server for the test file (beforeAll/afterAll) and connects to it with one client key. */
export const useFakeServer = () => {
  const clientKey = generateEd25519().private
  let server: FakeServer | undefined
  beforeAll(async () => {
    server = await startFakeServer()
  })
  afterAll(() => server?.stop())
  return {
    get server(): FakeServer {
      return server!
    },
    connect: () => connectFake(server!, clientKey)
  }
}
