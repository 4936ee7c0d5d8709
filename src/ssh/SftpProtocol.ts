// The SFTP protocol as the registry's two views (upload-only and agent read-only) speak it over ssh2's
// low-level SFTP server API (not a server): status codes, attributes, safe path normalization, the
// limits@openssh.com extension (SSH2.md pitfall 4) and DATA replies without a copy.
import * as posix from "node:path/posix"
import type { Attributes, SFTPWrapper } from "ssh2"
import { rewriteFirstPacket, sendNow } from "./Ssh2Internals.js"

export const STATUS = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  OP_UNSUPPORTED: 8
} as const

export const OPEN_FLAGS = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const

/** OpenSSH's sftp-server values: 256 KiB packets, 255 KiB reads and writes. */
export const MAX_PACKET = 256 * 1024
export const MAX_IO = MAX_PACKET - 1024
export const MAX_OPEN_HANDLES = 64

const S_IFDIR = 0o040000
const S_IFREG = 0o100000

export const dirAttrs = (mtime = new Date()): Attributes => {
  const t = Math.floor(mtime.getTime() / 1000)
  return { mode: S_IFDIR | 0o555, uid: 0, gid: 0, size: 0, atime: t, mtime: t }
}

export const fileAttrs = (size: number, mtime = new Date(), perm = 0o444): Attributes => {
  const t = Math.floor(mtime.getTime() / 1000)
  return { mode: S_IFREG | perm, uid: 0, gid: 0, size, atime: t, mtime: t }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/** An `ls -l` style line, which OpenSSH's `ls -l` prints as is. */
export const longname = (name: string, a: Attributes): string => {
  const dir = (a.mode & 0o170000) === S_IFDIR
  const bits = ["r", "w", "x", "r", "w", "x", "r", "w", "x"].map((c, i) => (a.mode & (0o400 >> i) ? c : "-")).join("")
  const d = new Date(a.mtime * 1000)
  const date = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2)} ${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`
  return `${dir ? "d" : "-"}${bits}    1 0        0        ${String(a.size).padStart(8)} ${date} ${name}`
}

/**
 * Resolves a client path against `/` with POSIX rules: `..` never climbs above `/`, doubled slashes and
 * `.` collapse, relative paths are relative to `/`. Undefined for paths no file can have (NUL bytes).
 */
export const normalizePath = (p: string): string | undefined => (p.includes("\0") ? undefined : posix.resolve("/", p))

// --- limits@openssh.com -------------------------------------------------------------------------------
// ssh2 answers INIT with a fixed VERSION packet without extensions and has no API for EXTENDED_REPLY.
// We add the extension to that one packet as it is written, and write the reply the way ssh2 writes
// its own packets (same flow-control accounting), so OpenSSH's client uses 255 KiB requests.

const PLAIN_VERSION = Buffer.from([0, 0, 0, 5, 2, 0, 0, 0, 3])
const VERSION_WITH_LIMITS = (() => {
  const name = Buffer.from("limits@openssh.com")
  const value = Buffer.from("1")
  const body = Buffer.alloc(1 + 4 + 4 + name.length + 4 + value.length)
  let p = 0
  body[p++] = 2
  body.writeUInt32BE(3, p)
  p += 4
  body.writeUInt32BE(name.length, p)
  name.copy(body, (p += 4))
  p += name.length
  body.writeUInt32BE(value.length, p)
  value.copy(body, p + 4)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
})()

const limitsReply = (reqId: number): Buffer => {
  const buf = Buffer.alloc(4 + 1 + 4 + 4 * 8)
  buf.writeUInt32BE(buf.length - 4, 0)
  buf[4] = 201 // SSH_FXP_EXTENDED_REPLY
  buf.writeUInt32BE(reqId, 5)
  buf.writeBigUInt64BE(BigInt(MAX_PACKET), 9)
  buf.writeBigUInt64BE(BigInt(MAX_IO), 17)
  buf.writeBigUInt64BE(BigInt(MAX_IO), 25)
  buf.writeBigUInt64BE(BigInt(MAX_OPEN_HANDLES), 33)
  return buf
}

/**
 * Advertises limits@openssh.com on this SFTP session and answers its EXTENDED request; other extended
 * requests get OP_UNSUPPORTED. Call right after accepting the subsystem, before any data arrives.
 */
export const advertiseLimits = (sftp: SFTPWrapper, later: (reqId: number, send: () => void) => void = (_, send) => send()): void => {
  sftp.once("close", rewriteFirstPacket(sftp, PLAIN_VERSION, VERSION_WITH_LIMITS))
  sftp.on("EXTENDED", (reqId: number, name: string) =>
    later(reqId, () => {
      if (name === "limits@openssh.com" && sendNow(sftp, limitsReply(reqId))) return
      sftp.status(reqId, STATUS.OP_UNSUPPORTED)
    }))
}

// --- DATA replies without the extra copy ----------------------------------------------------------------
// sftp.data() allocates a packet and copies the payload into it on every READ. A caller that reads file data
// straight into `packet.subarray(DATA_HEADER)` of a reusable buffer can send it with sendData instead: the
// header is filled in place and the packet goes to the channel as is (Ssh2Internals.sendNow), so the buffer
// may be reused as soon as this returns.

/** uint32 length, byte type, uint32 request id, uint32 data length. */
export const DATA_HEADER = 13
const SSH_FXP_DATA = 103

/** Sends bytes [DATA_HEADER, DATA_HEADER + dataLen) of `packet` as the DATA reply to `reqId`. */
export const sendData = (sftp: SFTPWrapper, reqId: number, packet: Buffer, dataLen: number): void => {
  const total = DATA_HEADER + dataLen
  packet.writeUInt32BE(total - 4, 0)
  packet[4] = SSH_FXP_DATA
  packet.writeUInt32BE(reqId, 5)
  packet.writeUInt32BE(dataLen, 9)
  // When ssh2 would have to queue it: its own path, which copies and queues as usual.
  if (!sendNow(sftp, packet.subarray(0, total))) sftp.data(reqId, packet.subarray(DATA_HEADER, total))
}
