// Uploads: the stream cut into large WRITE requests, up to `maxInFlight` outstanding, issued strictly in
// offset order so the registry can hash bytes as they arrive (ssh2's fastPut writes out of order, which
// forces the server to reorder before hashing: SSH2.md pitfall 5; createWriteStream waits for each 32 KiB
// write). Memory stays bounded: the source is pulled only while there is room in the window.
//
// Failure semantics: the remote handle is CLOSEd only after every byte was acknowledged and the source
// ended successfully. If the source fails (e.g. a check on the bytes refused them) or the Effect is
// interrupted, no CLOSE is sent: the server never sees a finished file, and ending the session or the
// connection makes it discard the partial one.
import { Effect, Stream } from "effect"
import type { SFTPWrapper } from "ssh2"
import { closedError, closeHandle, DEFAULT_IN_FLIGHT, isOpen, onClose, openHandle, requestSize, sftpError } from "./Sftp.js"
import type { SshError } from "./SshError.js"
import { whenWindow } from "./Ssh2Internals.js"
import { writeRequest } from "./Ssh2InternalsWrite.js"

export interface UploadOptions {
  /** Bytes per WRITE request; clamped to what the session negotiated (limits@openssh.com). */
  readonly chunkSize?: number
  /** Outstanding WRITE requests at most (memory bound ≈ chunkSize × maxInFlight). */
  readonly maxInFlight?: number
  /** Called with the total of bytes the server acknowledged, after each acknowledgement. */
  readonly onProgress?: (acknowledged: number) => void
  /** Open flags: "w" (default) truncates/creates. */
  readonly flags?: "w" | "wx"
}

/**
 * Writes `source` to `remotePath`, in order, with pipelined large WRITE requests. Succeeds with the
 * number of bytes written once the server acknowledged every write and the CLOSE.
 */
export const upload = <E, R>(
  sftp: SFTPWrapper,
  remotePath: string,
  source: Stream.Stream<Uint8Array, E, R>,
  options: UploadOptions = {}
): Effect.Effect<number, SshError | E, R> =>
  Effect.suspend(() => {
    const chunkSize = requestSize(sftp, options.chunkSize)
    const maxInFlight = Math.max(1, options.maxInFlight ?? DEFAULT_IN_FLIGHT)
    let handle: Buffer | undefined
    let offset = 0 // next byte position to issue
    let acked = 0
    let inFlight = 0
    let failure: SshError | undefined
    // Bytes that straddle source chunks are gathered here (each byte copied at most once, no allocation
    // per chunk); whole requests inside a chunk are sent as views of it.
    const acc = Buffer.allocUnsafe(chunkSize)
    let accLen = 0
    // The source chunk being sent, and the fiber waiting for it (or for the last ack) to be done.
    let cur: Buffer | undefined
    let curOff = 0
    let waiter: (() => void) | undefined
    let final = false // the source ended: send what acc holds, however short

    const onAck = (len: number) => (err?: Error | null) => {
      inFlight--
      if (err) failure ??= sftpError(`write ${remotePath}`, err)
      else {
        acked += len
        options.onProgress?.(acked)
      }
      pump()
    }
    // Sends `buf` as the next WRITE if fewer than maxInFlight are outstanding and the peer's window takes it
    // whole (writeRequest frames it straight into SSH packets, copying it before it returns); otherwise
    // false, and pump runs again at the next ack or window adjustment.
    const trySend = (buf: Buffer): boolean => {
      if (failure !== undefined || inFlight >= maxInFlight) return false
      if (!isOpen(sftp)) {
        failure ??= closedError(`write ${remotePath}`)
        return false
      }
      if (!writeRequest(sftp, handle!, buf, offset, onAck(buf.length))) {
        whenWindow(sftp, pump)
        return false
      }
      inFlight++
      offset += buf.length
      return true
    }
    // Sends what it can of the current chunk, in callbacks (acks, window), not in a fiber per request;
    // wakes the waiting fiber once the chunk is all sent or gathered, or a write failed.
    function pump(): void {
      for (;;) {
        if (accLen === chunkSize || (final && accLen > 0)) {
          if (!trySend(acc.subarray(0, accLen))) break
          accLen = 0
          continue
        }
        if (cur === undefined) break
        const rest = cur.length - curOff
        if (rest === 0) {
          cur = undefined
          break
        }
        if (accLen > 0 || rest < chunkSize) {
          const take = Math.min(chunkSize - accLen, rest)
          acc.set(cur.subarray(curOff, curOff + take), accLen)
          accLen += take
          curOff += take
          continue
        }
        if (!trySend(cur.subarray(curOff, curOff + chunkSize))) break
        curOff += chunkSize
      }
      if (waiter !== undefined) {
        const w = waiter
        waiter = undefined
        w()
      }
    }
    // Waits until `done()` holds (checked after each pump) or a write failed.
    const waitUntil = (done: () => boolean) =>
      Effect.async<void, SshError>((resume) => {
        const check = () => {
          if (failure) resume(Effect.fail(failure))
          else if (done()) resume(Effect.void)
          else waiter = check
        }
        waiter = check
        pump()
        return Effect.sync(() => {
          waiter = undefined
          cur = undefined
        })
      })

    // Nothing references a source chunk once push() returns (sent requests were copied into packets,
    // the rest into acc), so sources may reuse or hand on their buffers.
    const push = (chunk: Uint8Array): Effect.Effect<void, SshError> =>
      Effect.suspend(() => {
        cur = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        curOff = 0
        return waitUntil(() => cur === undefined)
      })

    // The last partial request, then every ack, then CLOSE.
    const finish = Effect.suspend(() => {
      final = true
      return waitUntil(() => accLen === 0 && inFlight === 0)
    }).pipe(
      Effect.zipRight(Effect.suspend(() => closeHandle(sftp, handle!))),
      Effect.map(() => acked)
    )

    // Writes in flight are failed by ssh2 when the channel closes; this also wakes a fiber waiting for room.
    const stopWatching = onClose(sftp, () => {
      failure ??= closedError(`write ${remotePath}`)
      pump()
    })
    return openHandle(sftp, remotePath, options.flags ?? "w").pipe(
      Effect.tap((h) => {
        handle = h
      }),
      Effect.zipRight(Stream.runForEach(source, push)),
      Effect.zipRight(finish),
      Effect.ensuring(Effect.sync(stopWatching))
    )
  })
