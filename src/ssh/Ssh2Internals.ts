// Every use of ssh2's private fields and hooks, in one place (with Ssh2InternalsWrite.ts, the client's WRITE
// framing, split off for length). ssh2 is pinned to SSH2_VERSION in package.json
// for this reason, and checkSsh2 (run by the registry at start-up) refuses any other version or a changed
// shape. Each accessor says what breaks without it and throws, naming the field, if the field is not what
// it expects: never a silent fallback. test/ssh/Ssh2Internals.test.ts checks the shape of each against the
// installed ssh2 and that each fast path below is taken (counted in `fastPaths`), so an upgrade that moves
// one fails that test by name instead of silently slowing a transfer or hanging a request.
// ssh2's files are imported statically (types in Ssh2Modules.d.ts), never through a run-time require: the
// programs' bundles carry ssh2 (scripts/postbuild.mjs), and a require would load a second copy from
// node_modules whose classes are not the ones the bundle's connections use.
import * as net from "node:net"
import type { Connection, ParsedKey, SFTPWrapper } from "ssh2"
import ssh2 from "ssh2"
import ssh2Package from "ssh2/package.json" with { type: "json" }
import Protocol from "ssh2/lib/protocol/Protocol.js"
import ssh2Sftp from "ssh2/lib/protocol/SFTP.js"
import ssh2Utils from "ssh2/lib/protocol/utils.js"
import { generateEd25519 } from "./KeyGen.js"

/** ssh2's own send of a built packet (queued during a key exchange, else encrypted and written). */
export const sendPacket = ssh2Utils.sendPacket as (proto: unknown, packet: Buffer) => void

/** The ssh2 release the accesses below were written for and tested against. */
export const SSH2_VERSION = "1.17.0"

export const broken = (what: string): Error =>
  new Error(`ssh2 internals changed: ${what} (this build expects ssh2 ${SSH2_VERSION}; see src/ssh/Ssh2Internals.ts)`)

/**
 * How often each fast path ran in this process (read by the canary test; a counter costs nothing). A path
 * that stops being taken after an upgrade shows up here as a zero, not as a slower benchmark.
 */
export const fastPaths = {
  /** VERSION packets sent with limits@openssh.com added (rewriteFirstPacket). */
  rewrittenPackets: 0,
  /** Packets written straight to the channel (sendNow): limits replies and DATA replies without a copy. */
  directPackets: 0,
  /** Wake-ups by the peer's window adjustment (whenWindow). */
  windowWakes: 0,
  /** Window adjustments sent by the session's own backpressure (adjustWindow). */
  windowAdjusts: 0,
  /** Requests read from the channel through the backpressure hook (interceptPush). */
  pushes: 0,
  /** Sessions ended with exit-status and EOF (endAsSshd). */
  sshdEnds: 0,
  /** DATA replies copied from the channel straight into the client READ's buffer (directDataReplies). */
  directReads: 0,
  /** Client WRITE requests framed straight into SSH packets, one copy of the data (writeRequest). */
  directWrites: 0,
  /** Client WRITE requests handed to ssh2's write() instead: a peer whose whole window is too small. */
  copiedWrites: 0,
  /** Client WRITE requests whose packets were built in a reused buffer (packetSlab), not one new buffer per packet. */
  pooledWrites: 0
}

// --- the shapes -----------------------------------------------------------------------------------------

interface PacketWriter {
  /** Where the payload starts in what alloc returns (5, or 0 during a key exchange, when packets queue). */
  allocStart: number
  alloc: (payloadLen: number) => Buffer
  finalize: (packet: Buffer) => Buffer
}
export interface ProtocolInternals {
  _packetRW: { write: PacketWriter }
  /** Defined while a key exchange runs: packets are then queued, not encrypted. */
  _kexinit: unknown
  _cipher: { allocPacket: (payloadLen: number) => Buffer }
  channelData: (id: number, data: Buffer) => void
  channelWindowAdjust: (id: number, n: number) => void
  exitStatus: (id: number, status: number) => void
  channelEOF: (id: number) => void
}
export interface SftpInternals {
  _protocol: ProtocolInternals
  /** ssh2's queue of replies waiting for the peer's window. */
  _buffer: Array<Buffer>
  incoming: { window: number; state: string }
  outgoing: { id: number; state: string; window: number; packetSize: number }
  push: (data: Buffer | null) => unknown
  _maxReadLen: unknown
  _maxWriteLen: unknown
  _writeReqid: number
  _requests: Record<number, { cb: (err?: Error | null) => void }>
}
const PROTOCOL_METHODS = ["channelData", "channelWindowAdjust", "exitStatus", "channelEOF"] as const
const isChannelInfo = (c: unknown): boolean =>
  typeof c === "object" && c !== null && typeof (c as { state?: unknown }).state === "string" && typeof (c as { window?: unknown }).window === "number"

/** What is wrong with this SFTPWrapper's private fields, or undefined. */
const sftpProblem = (s: SftpInternals): string | undefined => {
  const p = s._protocol as unknown
  if (typeof p !== "object" || p === null) return "SFTPWrapper._protocol is missing"
  for (const m of PROTOCOL_METHODS) if (typeof (p as Record<string, unknown>)[m] !== "function") return `_protocol.${m} is not a function`
  if (!Array.isArray(s._buffer)) return "SFTPWrapper._buffer is not an array"
  if (!isChannelInfo(s.incoming) || !isChannelInfo(s.outgoing)) return "SFTPWrapper.incoming/outgoing lost state or window"
  if (typeof s.outgoing.id !== "number" || typeof s.outgoing.packetSize !== "number") return "SFTPWrapper.outgoing lost id or packetSize"
  if (typeof s.push !== "function") return "SFTPWrapper.push is not a function"
  if (typeof s._writeReqid !== "number" || typeof s._requests !== "object" || s._requests === null) return "SFTPWrapper._writeReqid/_requests are gone"
  // The packet parser's state, which Ssh2InternalsRead.ts reads to find packet boundaries.
  if (!["_pktLen", "_pktLenBytes", "_pktPos"].every((f) => typeof (s as unknown as Record<string, unknown>)[f] === "number")) {
    return "SFTPWrapper._pktLen/_pktLenBytes/_pktPos (its packet parser) are gone"
  }
  return undefined
}

/** What is wrong with a protocol's packet writer, or undefined (read only once a connection exists). */
export const writerProblem = (proto: ProtocolInternals): string | undefined => {
  const w = (proto as { _packetRW?: { write?: Partial<PacketWriter> } })._packetRW?.write
  if (typeof w !== "object" || w === null) return "_protocol._packetRW.write is missing"
  if (typeof w.allocStart !== "number" || typeof w.alloc !== "function" || typeof w.finalize !== "function") return "_protocol._packetRW.write lost allocStart/alloc/finalize"
  return undefined
}
const checkedSftp = new WeakSet<object>()
export const internals = (sftp: SFTPWrapper): SftpInternals => {
  const s = sftp as unknown as SftpInternals
  if (!checkedSftp.has(sftp)) {
    const problem = sftpProblem(s)
    if (problem !== undefined) throw broken(problem)
    checkedSftp.add(sftp)
  }
  return s
}

const KEY_SYMBOLS = { privatePem: "Private key PEM", hashAlgorithm: "Hash Algorithm" } as const
const keySymbol = (key: ParsedKey, which: keyof typeof KEY_SYMBOLS): symbol => {
  const sym = Object.getOwnPropertySymbols(key).find((s) => s.description === KEY_SYMBOLS[which])
  if (sym === undefined) throw broken(`a parsed key has no ${JSON.stringify(KEY_SYMBOLS[which])} symbol`)
  return sym
}

/**
 * Why the installed ssh2 cannot be used with the accesses below, or undefined: another version, an SFTP
 * session built from a stand-in channel lacking a field we use, or a parsed key without the symbols we
 * read. Cheap (one ed25519 key made); run once at start-up.
 */
export const checkSsh2 = (): string | undefined => {
  try {
    const { version } = ssh2Package
    if (version !== SSH2_VERSION) return `ssh2 ${version} is installed; this build expects ssh2 ${SSH2_VERSION} (see src/ssh/Ssh2Internals.ts)`
    for (const m of PROTOCOL_METHODS) if (typeof Protocol.prototype[m] !== "function") return broken(`Protocol.${m} is gone`).message
    const SFTP = ssh2Sftp.SFTP as new (client: unknown, chan: unknown, cfg: unknown) => SftpInternals
    const protocol = Object.create(Protocol.prototype) as object
    const chan = { type: "session", incoming: { id: 0, window: 1, packetSize: 1, state: "open" }, outgoing: { id: 0, window: 1, packetSize: 1, state: "open" } }
    const s = new SFTP({ _protocol: protocol }, chan, { server: true })
    const problem = sftpProblem(s)
    if (problem !== undefined) return broken(problem).message
    if (s._protocol !== protocol || s.outgoing !== chan.outgoing || s.incoming !== chan.incoming) return broken("SFTPWrapper no longer keeps its channel's fields").message
    if (typeof s._maxReadLen !== "number" || typeof s._maxWriteLen !== "number") return broken("SFTPWrapper._maxReadLen/_maxWriteLen are gone").message
    if (typeof sendPacket !== "function") return broken("ssh2/lib/protocol/utils.js sendPacket is gone").message
    // The key symbols, on a key made for the purpose (keySymbol throws naming the missing one).
    const { utils } = ssh2
    // generateEd25519, not ssh2's generator directly: about 1 key in 256 from it does not parse (KeyGen.ts).
    const key = utils.parseKey(generateEd25519().private) as ParsedKey | Error
    if (key instanceof Error) return broken(`ssh2 cannot parse its own key: ${key.message}`).message
    keySymbol(key, "privatePem")
    keyHashAlgorithm(key)
  } catch (e) {
    return e instanceof Error ? e.message : String(e)
  }
  return undefined
}

// --- client side -----------------------------------------------------------------------------------------

const maxLen = (sftp: SFTPWrapper, field: "_maxReadLen" | "_maxWriteLen"): number => {
  const n = (sftp as unknown as SftpInternals)[field]
  if (typeof n !== "number" || !(n > 0)) throw broken(`SFTPWrapper.${field} is not a positive number`)
  return n
}

/**
 * Bytes one READ may ask for on this session (raised from 32 KiB by the server's limits@openssh.com reply
 * or its OpenSSH ident). Without it every read would be 32 KiB: eight times the requests and replies for
 * the agent's downloads (ssh2 splits nothing on reads, it refuses larger ones).
 */
export const maxReadLen = (sftp: SFTPWrapper): number => maxLen(sftp, "_maxReadLen")

/**
 * Bytes one WRITE may carry. ssh2 splits a larger write into sequential requests, each waiting for the
 * previous reply: without this, uploads would stop pipelining.
 */
export const maxWriteLen = (sftp: SFTPWrapper): number => maxLen(sftp, "_maxWriteLen")

/**
 * Whether the SFTP channel is open both ways. ssh2 silently drops a request written to a channel that is
 * no longer open, without ever calling back: without this check such a request would wait forever. A
 * dropped connection closes `incoming` but may leave `outgoing` "open".
 */
export const channelOpen = (sftp: SFTPWrapper): boolean => {
  const s = sftp as unknown as Partial<SftpInternals>
  if (!isChannelInfo(s.outgoing) || !isChannelInfo(s.incoming)) throw broken("SFTPWrapper.incoming/outgoing lost state or window")
  return s.outgoing!.state === "open" && s.incoming!.state !== "closed"
}

// --- server side: the connection ------------------------------------------------------------------------

/**
 * The TCP socket under a server-side connection. ssh2 emits "connection" only once the client's version
 * line arrives, without saying which injected socket it came from: without this the registry could not
 * attach its per-socket state (address, limits, deadline) to the connection.
 */
export const connectionSocket = (conn: Connection): net.Socket => {
  const sock = (conn as unknown as { _sock?: unknown })._sock
  if (!(sock instanceof net.Socket)) throw broken("Connection._sock is not a net.Socket")
  return sock
}

// --- server side: keys ----------------------------------------------------------------------------------

/**
 * Makes ssh2 sign with `keyObject` instead of the parsed key's PEM text. ssh2's sign() hands the PEM to
 * node:crypto on every handshake, which parses it again each time (a KeyObject is accepted the same way):
 * without this every handshake pays a private-key parse.
 */
export const signWithKeyObject = (key: ParsedKey, keyObject: unknown): void => {
  const sym = keySymbol(key, "privatePem")
  const record = key as unknown as Record<symbol, unknown>
  if (record[sym] !== key.getPrivatePEM()) throw broken("the \"Private key PEM\" symbol does not hold the key's PEM")
  record[sym] = keyObject
}

/**
 * The hash a parsed public key verifies with when the client names none (null for ed25519). ssh2 keeps it
 * under a private symbol; without it our own verify (over a KeyObject made once, instead of ssh2's verify
 * which parses the PEM on every login) would use the wrong hash for ssh-rsa and refuse valid signatures.
 */
export const keyHashAlgorithm = (key: ParsedKey): string | null => {
  const own = (key as unknown as Record<symbol, unknown>)[keySymbol(key, "hashAlgorithm")]
  if (own !== null && own !== undefined && typeof own !== "string") throw broken("the \"Hash Algorithm\" symbol holds a non-string")
  return own ?? null
}

// --- server side: an SFTP session -----------------------------------------------------------------------

const rewrites = new WeakMap<object, Map<number, { from: Buffer; to: Buffer; s: SftpInternals }>>()

/**
 * Sends `to` instead of the first packet on this session's channel that equals `from`, counting the extra
 * bytes against the peer's window. ssh2 writes its own VERSION reply, without extensions and with no hook:
 * without this OpenSSH's client never sees limits@openssh.com and falls back to 32 KiB requests. The hook
 * wraps the connection's `_protocol.channelData` once and serves every session of the connection.
 */
export const rewriteFirstPacket = (sftp: SFTPWrapper, from: Buffer, to: Buffer): (() => void) => {
  const s = internals(sftp)
  const proto = s._protocol
  let waiting = rewrites.get(proto)
  if (waiting === undefined) {
    const byChannel = new Map<number, { from: Buffer; to: Buffer; s: SftpInternals }>()
    waiting = byChannel
    rewrites.set(proto, byChannel)
    const original = proto.channelData
    proto.channelData = function (this: unknown, id: number, data: Buffer) {
      const r = byChannel.get(id)
      if (r !== undefined && data.length === r.from.length && data.equals(r.from)) {
        byChannel.delete(id)
        const extra = r.to.length - r.from.length
        // ssh2 counted `from` against the peer's window; count the extra bytes too
        if (r.s.outgoing.window >= extra) {
          r.s.outgoing.window -= extra
          fastPaths.rewrittenPackets++
          return original.call(this, id, r.to)
        }
      }
      return original.call(this, id, data)
    }
  }
  const id = s.outgoing.id
  waiting.set(id, { from, to, s })
  return () => void waiting.delete(id)
}

/**
 * Writes a whole SFTP packet to the channel now, in peer-sized pieces, as ssh2's sendOrBuffer does when
 * nothing is queued; false (nothing sent) when ssh2 would have to queue it. ssh2 has no API for raw
 * packets (EXTENDED_REPLY) and copies every DATA payload: without this there is no limits@openssh.com
 * reply and one extra copy of every byte the agent downloads. ssh2's protocol layer copies each piece
 * into its own SSH packet synchronously, so `packet` may be reused as soon as this returns.
 */
export const sendNow = (sftp: SFTPWrapper, packet: Buffer): boolean => {
  const s = internals(sftp)
  const out = s.outgoing
  if (s._buffer.length !== 0 || out.state !== "open" || out.window <= packet.length || out.packetSize <= 0) return false
  for (let p = 0; p < packet.length; ) {
    const n = Math.min(packet.length - p, out.packetSize)
    out.window -= n
    s._protocol.channelData(out.id, packet.subarray(p, p + n))
    p += n
  }
  fastPaths.directPackets++
  return true
}

/** Whether ssh2 holds replies waiting for the peer's window (its `_buffer`) on an open channel. */
export const repliesHeld = (sftp: SFTPWrapper): boolean => {
  const s = internals(sftp)
  return s._buffer.length > 0 && s.outgoing.state === "open"
}

const largestWindow = new WeakMap<SFTPWrapper, number>()
/** The peer's window now, remembering the largest it has granted. */
export const peerWindow = (sftp: SFTPWrapper): number => {
  const w = internals(sftp).outgoing.window
  if (w > (largestWindow.get(sftp) ?? 0)) largestWindow.set(sftp, w)
  return w
}

/**
 * Whether the peer is sure to adjust the window soon: less than half of the largest window it granted is
 * left, and clients (OpenSSH, ssh2) send WINDOW_ADJUST once they have used half. Waiting for the window is
 * only safe then; otherwise a reply must go out as it can.
 */
export const windowAdjustDue = (sftp: SFTPWrapper): boolean =>
  internals(sftp)._buffer.length > 0 || peerWindow(sftp) < largestWindow.get(sftp)! / 2

const windowWaiters = new WeakMap<SFTPWrapper, Set<() => void>>()
/**
 * Calls `f` once, at the peer's next window adjustment, after ssh2 has sent what it had queued. The window
 * is watched through a setter on the channel's `outgoing.window` (ssh2 adds to it on WINDOW_ADJUST), not
 * through ssh2's one drain hook (`_chunkcb`), which ssh2 overwrites whenever a send exhausts the window.
 * Without it a server waiting for room would never resume. Arming the same `f` again before then changes
 * nothing.
 */
export const whenWindow = (sftp: SFTPWrapper, f: () => void): void => {
  let waiting = windowWaiters.get(sftp)
  if (waiting === undefined) {
    const set = new Set<() => void>()
    waiting = set
    windowWaiters.set(sftp, set)
    const out = internals(sftp).outgoing
    const desc = Object.getOwnPropertyDescriptor(out, "window")
    if (desc === undefined || !("value" in desc) || desc.configurable !== true) throw broken("outgoing.window is not a plain data field")
    let w = out.window
    const wake = () => {
      fastPaths.windowWakes++
      const fs = [...set]
      set.clear()
      for (const g of fs) g()
    }
    Object.defineProperty(out, "window", {
      configurable: true,
      enumerable: true,
      get: () => w,
      set: (v: number) => {
        const grew = v > w
        w = v
        // After ssh2's own drain, which runs synchronously right after the adjustment.
        if (grew && set.size > 0) queueMicrotask(wake)
      }
    })
  }
  waiting.add(f)
}

/**
 * Routes the data ssh2 hands the session (`push`, called by its protocol layer with each CHANNEL_DATA
 * payload, null at EOF) through `hook`, and returns ssh2's own `push`, which parses data now. ssh2 adjusts
 * the channel window only when push returns undefined: without this hook a client that pipelines requests
 * and never reads replies could make the server hold unbounded memory.
 */
export const interceptPush = (sftp: SFTPWrapper, hook: (data: Buffer | null) => false | undefined): ((data: Buffer | null) => void) => {
  const s = internals(sftp)
  const parse = s.push.bind(sftp) as (data: Buffer | null) => void
  s.push = (data) => {
    fastPaths.pushes++
    return hook(data)
  }
  return parse
}

/**
 * Tops the client's window back up to `max` once it is at or below `threshold`, on an open channel (what
 * ssh2 does after each push returning undefined). Without it a session that paused reading would never
 * let the client send again.
 */
export const adjustWindow = (sftp: SFTPWrapper, threshold: number, max: number): void => {
  const s = internals(sftp)
  if (s.incoming.window > threshold || s.outgoing.state !== "open") return
  const n = max - s.incoming.window
  s.incoming.window += n
  s._protocol.channelWindowAdjust(s.outgoing.id, n)
  fastPaths.windowAdjusts++
}

/**
 * Sends exit-status 0 and EOF, as sshd does before closing an SFTP session; ssh2's SFTPWrapper has no API
 * for either. Without it OpenSSH's scp in SFTP mode exits 1.
 */
export const endAsSshd = (sftp: SFTPWrapper): void => {
  const s = internals(sftp)
  if (s.outgoing.state !== "open") return
  s._protocol.exitStatus(s.outgoing.id, 0)
  s._protocol.channelEOF(s.outgoing.id)
  s.outgoing.state = "eof"
  fastPaths.sshdEnds++
}
