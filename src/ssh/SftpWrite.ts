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
import { whenWindow, writeRequest } from "./Ssh2Internals.js"

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
    let wake: (() => void) | undefined // resumes a fiber waiting for room / for the last ack
    const acc = Buffer.allocUnsafe(chunkSize)
    let accLen = 0

    const notify = () => {
      const w = wake
      wake = undefined
      w?.()
    }
    // Waits until `ready()` holds or a write failed.
    const waitUntil = (ready: () => boolean) =>
      Effect.async<void, SshError>((resume) => {
        const check = () => {
          if (failure) resume(Effect.fail(failure))
          else if (ready()) resume(Effect.void)
          else wake = check
        }
        check()
        return Effect.sync(() => {
          wake = undefined
        })
      })

    // Sends `buf` as the next WRITE once fewer than maxInFlight are outstanding and the peer's window
    // takes it whole (writeRequest frames it straight into SSH packets; ssh2 would copy it and queue
    // what the window cannot take). The bytes are copied before this resumes: the caller may reuse buf.
    const send = (buf: Buffer) =>
      Effect.async<void, SshError>((resume) => {
        const attempt = () => {
          if (failure) return resume(Effect.fail(failure))
          if (inFlight < maxInFlight) {
            if (!isOpen(sftp)) return resume(Effect.fail((failure ??= closedError(`write ${remotePath}`))))
            const len = buf.length
            const sent = writeRequest(sftp, handle!, buf, offset, (err) => {
              inFlight--
              if (err) failure ??= sftpError(`write ${remotePath}`, err)
              else {
                acked += len
                options.onProgress?.(acked)
              }
              notify()
            })
            if (sent) {
              inFlight++
              offset += len
              return resume(Effect.void)
            }
            whenWindow(sftp, notify)
          }
          wake = attempt
        }
        attempt()
        return Effect.sync(() => {
          wake = undefined
        })
      })

    // Whole requests inside a source chunk are sent as views of it; bytes that straddle chunks
    // are gathered in one owned buffer (each byte copied at most once, no allocation per chunk).
    // Nothing references a source chunk once push() returns, so sources may reuse their buffers.
    const push = (chunk: Uint8Array): Effect.Effect<void, SshError> =>
      Effect.gen(function* () {
        const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
        let off = 0
        if (accLen > 0) {
          const take = Math.min(chunkSize - accLen, bytes.length)
          acc.set(bytes.subarray(0, take), accLen)
          accLen += take
          off = take
          if (accLen < chunkSize) return
          yield* send(acc) // copied into packets before send returns: acc is free again
          accLen = 0
        }
        while (bytes.length - off >= chunkSize) {
          yield* send(bytes.subarray(off, off + chunkSize))
          off += chunkSize
        }
        if (off < bytes.length) {
          acc.set(bytes.subarray(off), 0)
          accLen = bytes.length - off
        }
      })

    const finish = Effect.suspend(() => (accLen > 0 ? send(acc.subarray(0, accLen)) : Effect.void)).pipe(
      Effect.zipRight(waitUntil(() => inFlight === 0)),
      Effect.zipRight(Effect.suspend(() => closeHandle(sftp, handle!))),
      Effect.map(() => acked)
    )

    // Writes in flight are failed by ssh2 when the channel closes; this also wakes a fiber waiting for room.
    const stopWatching = onClose(sftp, () => {
      failure ??= closedError(`write ${remotePath}`)
      notify()
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
