// The client's WRITE requests framed straight into SSH packets: part of Ssh2Internals.ts (every use of
// ssh2's private fields, each checked and failing loudly if moved; fast paths counted in its fastPaths and
// by test/ssh/Ssh2Internals.test.ts), split off for length.
import { randomFillSync } from "node:crypto"
import type { SFTPWrapper } from "ssh2"
import {
  broken, fastPaths, internals, maxWriteLen, peerWindow, type ProtocolInternals, type SftpInternals, sendPacket, windowAdjustDue, writerProblem
} from "./Ssh2Internals.js"

// --- client side: packet buffers reused -----------------------------------------------------------------
// ssh2 allocates each outgoing 32 KiB packet anew (the cipher's allocPacket), and the garbage collector then
// reclaims 64 MiB of them per 64 MiB uploaded. writeRequest lays a request's packets out itself, in one
// buffer ("slab") taken from a per-socket pool, when the cipher is ssh2's native AES-GCM (which encrypts in
// place) and its layout matches ours. A slab is reused only once the socket has nothing left to write
// (writableLength 0: every byte handed to it, the slab's included, went to the kernel).

const SLAB_SIZE = 288 * 1024 // a 255 KiB request and its packets' headers, padding and tags
const FREE_SLABS = 16
const slabPools = new WeakMap<object, { free: Buffer[]; used: Buffer[] }>()

/** A slab for one request's packets on `sock` (see above). */
const packetSlab = (sock: { readonly writableLength: number }): Buffer => {
  let pool = slabPools.get(sock)
  if (pool === undefined) slabPools.set(sock, (pool = { free: [], used: [] }))
  if (sock.writableLength === 0 && pool.used.length > 0) {
    for (const b of pool.used) if (pool.free.length < FREE_SLABS) pool.free.push(b)
    pool.used = []
  }
  const slab = pool.free.pop() ?? Buffer.allocUnsafeSlow(SLAB_SIZE)
  // A socket that never drains keeps no more than this many in the pool: older ones are left to the GC.
  if (pool.used.push(slab) > 2 * FREE_SLABS) pool.used.shift()
  return slab
}

/** Bytes of an AES-GCM packet (ssh2's AESGCMCipherBinding.allocPacket) for a payload, and its padding. */
const gcmPacket = (payloadLen: number): { readonly bytes: number; readonly padLen: number } => {
  const unpadded = 4 + 1 + payloadLen
  let padLen = 16 - ((unpadded - 4) & 15)
  if (padLen < 4) padLen += 16
  return { bytes: unpadded + padLen + 16, padLen }
}

const ownLayout = new WeakMap<object, boolean>()
/** Whether `cipher` is ssh2's in-place AES-GCM with the layout gcmPacket computes (checked once per cipher). */
const gcmInPlace = (cipher: ProtocolInternals["_cipher"]): boolean => {
  let ok = ownLayout.get(cipher)
  if (ok === undefined) {
    ok = false
    if ((cipher as { constructor?: { name?: string } }).constructor?.name === "AESGCMCipherBinding" && typeof cipher.allocPacket === "function") {
      const theirs = cipher.allocPacket(100)
      const { bytes, padLen } = gcmPacket(100)
      ok = theirs.length === bytes && theirs.readUInt32BE(0) === bytes - 16 - 4 && theirs[4] === padLen
    }
    ownLayout.set(cipher, ok)
  }
  return ok
}

const random = Buffer.allocUnsafe(4096)
let randomAt = random.length
/** Random padding, from a pool refilled 4 KiB at a time (as the patched ssh2 does: scripts/patch-deps.mjs). */
const pad = (packet: Buffer, at: number, n: number): void => {
  if (randomAt + n > random.length) {
    randomFillSync(random)
    randomAt = 0
  }
  random.copy(packet, at, randomAt, randomAt + n)
  randomAt += n
}

/** The client's socket under an SFTP session (ssh2's Client._sock), for its writableLength. */
const clientSocket = (s: SftpInternals): { readonly writableLength: number } => {
  const sock = (s as unknown as { _client?: { _sock?: { writableLength?: unknown } } })._client?._sock
  if (sock === undefined || typeof sock.writableLength !== "number") throw broken("SFTPWrapper._client._sock is not a writable stream")
  return sock as { readonly writableLength: number }
}

const CHANNEL_DATA = 94 // SSH_MSG_CHANNEL_DATA
const SFTP_WRITE = 6 // SSH_FXP_WRITE
const checkedWriters = new WeakSet<object>()

/**
 * Sends one SFTP WRITE request of `data` at `position`, framed straight into the SSH packets that ssh2
 * encrypts and writes: each byte of `data` is copied once, into its packet. ssh2's write() first copies
 * the whole request into a new buffer, then each 32 KiB piece again into its packet: without this an
 * upload pays a second copy and a request-sized allocation for every byte (the client's CPU, not the
 * network, limits deployctl's upload on a shared machine). `cb` gets ssh2's answer, as from write().
 *
 * Returns false, sending nothing, when the request cannot go out whole now because the peer's window is
 * short and the peer is sure to adjust it (windowAdjustDue): the caller waits with whenWindow and calls
 * again. A peer whose whole window is too small for the request gets it through ssh2's write() instead,
 * which queues and splits it (counted as copiedWrites). Like ssh2, nothing is sent on a closed channel:
 * the caller checks that first.
 */
export const writeRequest = (
  sftp: SFTPWrapper,
  handle: Buffer,
  data: Buffer,
  position: number,
  cb: (err?: Error | null) => void
): boolean => {
  const s = internals(sftp)
  const out = s.outgoing
  const headerLen = 4 + 1 + 4 + 4 + handle.length + 8 + 4
  const total = headerLen + data.length
  if (data.length > maxWriteLen(sftp)) throw new Error(`writeRequest: ${data.length} bytes, more than the session's ${maxWriteLen(sftp)}`)
  // peerWindow, not out.window: it remembers the largest window granted, which windowAdjustDue needs.
  if (s._buffer.length !== 0 || out.state !== "open" || peerWindow(sftp) <= total || out.packetSize <= 0) {
    if (windowAdjustDue(sftp)) return false
    fastPaths.copiedWrites++
    sftp.write(handle, data, 0, data.length, position, cb)
    return true
  }
  const proto = s._protocol
  if (!checkedWriters.has(proto)) {
    const problem = writerProblem(proto)
    if (problem !== undefined) throw broken(problem)
    checkedWriters.add(proto)
  }
  // The request's header, as ssh2's write() lays it out (reqid numbering shared with ssh2's requests).
  const header = Buffer.allocUnsafe(headerLen)
  header.writeUInt32BE(total - 4, 0)
  header[4] = SFTP_WRITE
  // ssh2's numbering (a signed 32-bit counter), keyed as its STATUS handler reads the id: unsigned.
  const reqid = (s._writeReqid = (s._writeReqid + 1) & (2 ** 32 - 1)) >>> 0
  header.writeUInt32BE(reqid, 5)
  header.writeUInt32BE(handle.length, 9)
  handle.copy(header, 13)
  header.writeUInt32BE(Math.floor(position / 2 ** 32), 13 + handle.length)
  header.writeUInt32BE(position >>> 0, 17 + handle.length)
  header.writeUInt32BE(data.length, 21 + handle.length)
  s._requests[reqid] = { cb }
  // CHANNEL_DATA packets of at most packetSize bytes of the SFTP stream, as ssh2's channelData builds one:
  // in a pooled slab when the cipher allows (not during a key exchange, when ssh2 queues plain payloads).
  const w = proto._packetRW.write
  const own = proto._kexinit === undefined && w.allocStart === 5 && gcmInPlace(proto._cipher)
  let slabBytes = 0
  if (own) for (let sent = 0; sent < total; sent += out.packetSize) slabBytes += gcmPacket(9 + Math.min(total - sent, out.packetSize)).bytes
  const slab = own && slabBytes <= SLAB_SIZE ? packetSlab(clientSocket(s)) : undefined
  let at = 0
  for (let sent = 0; sent < total; ) {
    const n = Math.min(total - sent, out.packetSize)
    let p = w.allocStart
    let packet: Buffer
    if (slab !== undefined) {
      const { bytes, padLen } = gcmPacket(9 + n)
      packet = slab.subarray(at, at + bytes)
      at += bytes
      packet.writeUInt32BE(bytes - 16 - 4, 0)
      packet[4] = padLen
      pad(packet, 5 + 9 + n, padLen)
    } else packet = w.alloc(9 + n)
    packet[p] = CHANNEL_DATA
    packet.writeUInt32BE(out.id, p + 1)
    packet.writeUInt32BE(n, p + 5)
    p += 9
    const end = sent + n
    if (sent < headerLen) {
      p += header.copy(packet, p, sent, Math.min(headerLen, end))
    }
    if (end > headerLen) data.copy(packet, p, Math.max(0, sent - headerLen), end - headerLen)
    out.window -= n
    sendPacket(proto, w.finalize(packet))
    sent = end
  }
  fastPaths.directWrites++
  if (slab !== undefined) fastPaths.pooledWrites++
  return true
}
