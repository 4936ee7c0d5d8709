// The SFTP client shared by every program: the session as a scoped resource and one request as an Effect
// that always settles. Transfers build on it: SftpWrite.ts (pipelined uploads), SftpRead.ts (pipelined
// reads into pooled buffers, bounded reads of small files).
import { Effect, type Scope } from "effect"
import type { Client, OpenMode, SFTPWrapper, Stats } from "ssh2"
import { channelOpen, maxWriteLen } from "./Ssh2Internals.js"
import { directDataReplies } from "./Ssh2InternalsRead.js"
import { SshError } from "./SshError.js"

export const sftpError = (what: string, cause: unknown) =>
  new SshError({ reason: "Sftp", message: `sftp ${what} failed: ${(cause as Error)?.message ?? String(cause)}`, cause })

/** Opens an SFTP session on `client`; it is ended when the Scope closes. */
export const openSftp = (client: Client): Effect.Effect<SFTPWrapper, SshError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<SFTPWrapper, SshError>((resume) => {
      try {
        client.sftp((err, sftp) => {
          if (err) return resume(Effect.fail(sftpError("session", err)))
          sftp.once("close", () => closedSessions.add(sftp))
          try {
            directDataReplies(sftp)
          } catch (cause) {
            sftp.end()
            return resume(Effect.fail(sftpError("session", cause)))
          }
          resume(Effect.succeed(sftp))
        })
      } catch (cause) {
        resume(Effect.fail(sftpError("session", cause)))
      }
    }),
    (sftp) => Effect.sync(() => sftp.end())
  )

// ssh2 silently DROPS a request issued on a channel that is no longer open (tryWritePayload) and
// fails pending ones only once, at close: a request sent after that would wait forever. So every
// request goes through `request` (or, for pipelined ones, checks `isOpen` and watches `onClose`).
const closedSessions = new WeakSet<SFTPWrapper>()

/** Whether a request sent now can still be answered. */
export const isOpen = (sftp: SFTPWrapper): boolean => !closedSessions.has(sftp) && channelOpen(sftp)

export const closedError = (what: string) => new SshError({ reason: "Sftp", message: `sftp ${what} failed: connection closed` })

/** Calls `f` once if the session closes before `stop()` is called; stop() removes the listener. */
export const onClose = (sftp: SFTPWrapper, f: () => void): (() => void) => {
  // One listener per pending request: many may wait at once (parallel reads), and each is removed.
  if (sftp.getMaxListeners() !== 0) sftp.setMaxListeners(0)
  sftp.once("close", f)
  return () => void sftp.removeListener("close", f)
}

/**
 * One SFTP request as an Effect: fails at once when the session is closed, and settles with a
 * "connection closed" failure if it closes while the reply is awaited.
 */
export const request = <A>(
  sftp: SFTPWrapper,
  what: string,
  start: (callback: (err: Error | null | undefined, value: A) => void) => void
): Effect.Effect<A, SshError> =>
  Effect.async<A, SshError>((resume) => {
    if (!isOpen(sftp)) return resume(Effect.fail(closedError(what)))
    let settled = false
    const settle = (e: Effect.Effect<A, SshError>) => {
      if (settled) return
      settled = true
      stop()
      resume(e)
    }
    const stop = onClose(sftp, () => settle(Effect.fail(closedError(what))))
    try {
      start((err, value) => settle(err ? Effect.fail(sftpError(what, err)) : Effect.succeed(value)))
    } catch (cause) {
      settle(Effect.fail(sftpError(what, cause)))
    }
    return Effect.sync(() => {
      settled = true
      stop()
    })
  })

/** Default request size: OpenSSH's 255 KiB limit (fewer round trips, fewer status replies). */
export const DEFAULT_CHUNK = 255 * 1024
/**
 * Requests outstanding by default: about 3 MiB, a little more than the 2 MiB channel window an ssh2 server
 * (the registry) grants. More only waits as copies in ssh2's queue: 64 made deployctl's upload 9% slower
 * (more allocation and garbage collection for the same bytes).
 */
export const DEFAULT_IN_FLIGHT = 12

/** The WRITE request size uploads use on this session (sources that read in multiples of it avoid copies). */
export const requestSize = (sftp: SFTPWrapper, chunkSize: number = DEFAULT_CHUNK): number => Math.max(1, Math.min(chunkSize, maxWriteLen(sftp)))

export const openHandle = (sftp: SFTPWrapper, path: string, flags: OpenMode) =>
  request<Buffer>(sftp, `open ${path}`, (cb) => sftp.open(path, flags, cb))

export const closeHandle = (sftp: SFTPWrapper, handle: Buffer) =>
  request<void>(sftp, "close", (cb) => sftp.close(handle, (err) => cb(err, undefined)))

/** FSTAT of an open handle. */
export const fstat = (sftp: SFTPWrapper, handle: Buffer, what = "fstat") => request<Stats>(sftp, what, (cb) => sftp.fstat(handle, cb))
