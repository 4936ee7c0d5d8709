// Reads over SFTP: a whole file fed to a sink through a window of concurrent READs into pooled buffers
// (the agent's downloads), and small files read whole up to a limit (documents from a peer we do not
// trust with our memory). Callbacks inside, not a Stream per read: allocation and per-element work per
// 255 KiB read were most of the agent's download time (bench/profile.ts -mode agent-deploy).
import { Effect } from "effect"
import type { SFTPWrapper } from "ssh2"
import { closeHandle, fstat, isOpen, onClose, openHandle, request } from "./Sftp.js"
import { maxReadLen } from "./Ssh2Internals.js"
import { FileTooLarge, type SshError } from "./SshError.js"

/**
 * Receives a file in order, a batch of consecutive pieces at a time. The pieces are pooled read buffers:
 * they are reused as soon as the returned Effect ends, so a sink must not keep them.
 */
export type Sink<E> = (pieces: ReadonlyArray<Buffer>) => Effect.Effect<void, E>

/** Bytes per READ: the registry's 255 KiB (limits@openssh.com raises ssh2's limit to it). */
const MAX_CHUNK = 256 * 1024
/** Bytes of READs in flight (SSH2.md: large parallel reads). */
const WINDOW_BYTES = 8 * 1024 * 1024
const STALL_MS = 60_000

/** What went wrong underneath an SshError from `request`, so callers word failures in their own terms. */
export const causeOf = (e: SshError): unknown => e.cause ?? new Error("connection closed")
/** Whether a failure is SFTP's "no such file". */
export const isNoSuchFile = (cause: unknown): boolean => (cause as { code?: unknown } | undefined)?.code === 2
const isEof = (cause: unknown): boolean => (cause as { code?: unknown } | undefined)?.code === 1

interface Slot {
  readonly pos: number
  readonly len: number
  readonly buf: Buffer
  got: number
}

/** Closes a handle without waiting: a stalled peer must not hold up a shutdown; ending the session fails it anyway. */
const closeLater = (sftp: SFTPWrapper, handle: Buffer) => Effect.asVoid(Effect.forkDaemon(Effect.ignore(closeHandle(sftp, handle))))

/**
 * Reads `path` with a window of concurrent READs into pooled buffers and hands `sink` every run of reads
 * that has arrived, in order. The size comes from FSTAT; a file that ends early fails. `toError` words
 * the transfer's own failures (its argument is the underlying cause); the sink's pass through unchanged.
 */
export const readInto = <E, F>(sftp: SFTPWrapper, path: string, sink: Sink<E>, toError: (cause: unknown) => F): Effect.Effect<void, E | F> =>
  Effect.acquireUseRelease(
    Effect.mapError(openHandle(sftp, path, "r"), (e) => toError(causeOf(e))),
    (handle) =>
      Effect.gen(function* () {
        const { size } = yield* Effect.mapError(fstat(sftp, handle), (e) => toError(causeOf(e)))
        const chunk = Math.max(16 * 1024, Math.min(MAX_CHUNK, maxReadLen(sftp)))
        const window = Math.max(4, Math.min(64, Math.floor(WINDOW_BYTES / chunk)))
        const pool: Array<Buffer> = []
        const slots: Array<Slot> = []
        let next = 0
        let failure: unknown
        let wake: (() => void) | undefined
        const notify = () => {
          const w = wake
          wake = undefined
          w?.()
        }
        const fail = (err: unknown) => {
          failure ??= err
          notify()
        }
        const read = (slot: Slot) => {
          if (!isOpen(sftp)) return fail(new Error("connection closed"))
          try {
            sftp.read(handle, slot.buf, slot.got, slot.len - slot.got, slot.pos + slot.got, (err, n) => {
              if (err) return fail(err)
              // A server may answer short; ask for the rest. Nothing at all before the end: the file shrank.
              if (n === 0) return fail(new Error(`file ended at ${slot.pos + slot.got}, expected ${size} bytes`))
              slot.got += n
              if (slot.got < slot.len) return read(slot)
              if (slot === slots[0]) notify()
            })
          } catch (e) {
            fail(e)
          }
        }
        const fill = () => {
          while (next < size && slots.length < window && failure === undefined) {
            const len = Math.min(chunk, size - next)
            const slot: Slot = { pos: next, len, buf: pool.pop() ?? Buffer.allocUnsafe(chunk), got: 0 }
            slots.push(slot)
            next += len
            read(slot)
          }
        }
        const headArrived = Effect.async<void, F>((resume) => {
          const finish = () => resume(failure === undefined ? Effect.void : Effect.fail(toError(failure)))
          const ready = () => failure !== undefined || slots[0]!.got === slots[0]!.len
          if (ready()) return finish()
          const timer = setTimeout(() => fail(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS)
          const stopWatching = onClose(sftp, () => fail(new Error("connection closed")))
          const stop = () => {
            clearTimeout(timer)
            stopWatching()
            wake = undefined
          }
          const check = () => {
            if (!ready()) return void (wake = check)
            stop()
            finish()
          }
          wake = check
          return Effect.sync(stop)
        })
        fill()
        while (slots.length > 0) {
          yield* headArrived
          let n = 1
          while (n < slots.length && slots[n]!.got === slots[n]!.len) n++
          const batch = slots.splice(0, n)
          fill() // keep the window full while the sink works
          yield* sink(batch.map((s) => (s.len === s.buf.length ? s.buf : s.buf.subarray(0, s.len))))
          for (const s of batch) pool.push(s.buf)
          fill()
        }
      }),
    (handle) => closeLater(sftp, handle)
  )

/** Reads all of `path`, one READ at a time, failing as soon as it exceeds `limit` bytes (whatever FSTAT would claim). */
export const readCapped = (sftp: SFTPWrapper, path: string, limit: number): Effect.Effect<Buffer, SshError | FileTooLarge> =>
  Effect.acquireUseRelease(
    openHandle(sftp, path, "r"),
    (handle) =>
      Effect.gen(function* () {
        const chunk = Math.max(1024, Math.min(MAX_CHUNK, maxReadLen(sftp)))
        const parts: Array<Buffer> = []
        let total = 0
        for (;;) {
          const buf = Buffer.allocUnsafe(Math.min(chunk, limit + 1 - total))
          const n = yield* request<number>(sftp, `read ${path}`, (cb) =>
            sftp.read(handle, buf, 0, buf.length, total, (err, n) => (isEof(err) ? cb(undefined, 0) : cb(err, n)))
          )
          if (n === 0) return Buffer.concat(parts, total)
          parts.push(buf.subarray(0, n))
          total += n
          if (total > limit) return yield* new FileTooLarge({ path, limit })
        }
      }),
    (handle) => closeLater(sftp, handle)
  )
