// The client's DATA replies copied straight into the reader's buffer: part of Ssh2Internals.ts (every use
// of ssh2's private fields, each checked and failing loudly if moved; fast paths counted in its fastPaths
// and by test/ssh/Ssh2Internals.test.ts), split off for length.
//
// ssh2's SFTP client gathers each packet that spans several CHANNEL_DATA payloads into a buffer of its own
// (a 255 KiB READ reply arrives as eight 32 KiB payloads: one Buffer.allocUnsafe per reply), then copies the
// data again into the buffer the READ named. Here a DATA reply to a READ with a buffer goes from the channel
// payloads into that buffer directly: one copy, no buffer per reply. Every other packet is handed to ssh2's
// own parser whole and unchanged.
import type { SFTPWrapper } from "ssh2"
import { fastPaths, internals, type SftpInternals } from "./Ssh2Internals.js"

const SSH_FXP_DATA = 103
/** uint32 length, byte type, uint32 request id, uint32 data length. */
const DATA_HEADER = 13

/** ssh2's packet parser (SFTP.push): idle between packets. */
interface Parser {
  _pktLen: number
  _pktLenBytes: number
  _pktPos: number
}
interface ReadRequest {
  readonly buffer?: unknown
  readonly cb: (err: undefined, buffer: Buffer, nb: number) => void
}

const idle = (p: Parser) => p._pktLenBytes === 0 && p._pktPos === 0

/**
 * Installs the direct DATA path on a client session (call once it is open). Should ssh2's parser ever be
 * found inside a packet at a boundary of ours (data ssh2 parsed before this was installed), the session
 * falls back to ssh2's parser for good: slower, never wrong.
 */
export const directDataReplies = (sftp: SFTPWrapper): void => {
  // internals() has checked the parser's fields with the rest (and throws, naming them, if they moved).
  const s = internals(sftp) as SftpInternals & Parser
  const parse = s.push.bind(sftp) as (data: Buffer | null) => unknown
  const requests = s._requests as unknown as Record<number, ReadRequest | undefined>
  const head = Buffer.allocUnsafe(DATA_HEADER)
  let headLen = 0
  /** Bytes of the current packet still to hand to ssh2. */
  let passing = 0
  /** The DATA reply being copied into its READ's buffer, up to `end`. */
  let into: { readonly req: ReadRequest; readonly buf: Buffer; readonly end: number; at: number } | undefined
  let off = false

  s.push = (data) => {
    if (off || data === null) return parse(data)
    let p = 0
    while (p < data.length) {
      if (into !== undefined) {
        const n = Math.min(into.end - into.at, data.length - p)
        data.copy(into.buf, into.at, p, p + n)
        into.at += n
        p += n
        if (into.at === into.end) {
          const { req, buf, end } = into
          into = undefined
          fastPaths.directReads++
          req.cb(undefined, buf, end)
        }
        continue
      }
      if (passing > 0) {
        const n = Math.min(passing, data.length - p)
        parse(data.subarray(p, p + n))
        passing -= n
        p += n
        continue
      }
      if (headLen === 0 && !idle(s)) {
        off = true
        return parse(data.subarray(p))
      }
      // A packet starts: its length and type first, then (a DATA reply) the request id and data length.
      const want = headLen < 5 ? 5 : Math.min(DATA_HEADER, 4 + head.readUInt32BE(0))
      const n = Math.min(want - headLen, data.length - p)
      data.copy(head, headLen, p, p + n)
      headLen += n
      p += n
      if (headLen < want) continue
      const len = head.readUInt32BE(0)
      if (len === 0) {
        // ssh2 reports it (Invalid packet length)
        off = true
        parse(Buffer.from(head.subarray(0, headLen)))
        return parse(data.subarray(p))
      }
      if (head[4] === SSH_FXP_DATA && headLen < DATA_HEADER && 4 + len > headLen) continue
      if (head[4] === SSH_FXP_DATA && headLen === DATA_HEADER) {
        const id = head.readUInt32BE(5)
        const dataLen = head.readUInt32BE(9)
        const req = requests[id]
        const buf = req?.buffer
        if (req !== undefined && Buffer.isBuffer(buf) && len === 9 + dataLen && dataLen > 0 && dataLen <= buf.length) {
          delete requests[id]
          headLen = 0
          into = { req, buf, end: dataLen, at: 0 }
          continue
        }
      }
      // Not ours: ssh2 parses it, the bytes gathered here first.
      passing = 4 + len - headLen
      const gathered = Buffer.from(head.subarray(0, headLen))
      headLen = 0
      parse(gathered)
    }
    return undefined
  }
}
