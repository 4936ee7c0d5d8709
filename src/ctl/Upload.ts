// `deployctl addver -file`: the file is read once, into buffers the check lends (moved to its worker
// thread and back, LayerFeed.ts), and each chunk read goes to the SFTP upload and then — not copied — to
// that worker, which hashes it and checks it is a valid tar.gz (ArchiveCheck.ts), all at the same time.
// The bytes hashed and checked are the bytes sent, whatever happens to the file meanwhile. The verdict is
// awaited before the upload is CLOSEd, and a bad archive stops the upload at once: it is never completed
// on the registry (fault 9), which discards it when the session ends, and addver is never sent for it.
// Memory stays flat for any size. A small file (at most INLINE_MAX) is read whole instead and checked on
// this thread while the SFTP session opens (no worker: its start costs more than that check), so a bad
// one is never uploaded at all.
import { Effect, Option, Stream, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Client } from "ssh2"
import type { SshError } from "../ssh/SshError.js"
import { DEFAULT_CHUNK, openSftp, requestSize } from "../ssh/Sftp.js"
import { upload } from "../ssh/SftpWrite.js"
import { readUpTo } from "../archive/LayerCheck.js"
import { INLINE_MAX } from "../fs/FileHasher.js"
import { checkArchive, checkArchiveBytes, FileError, InvalidArchive, startArchiveCheck } from "./ArchiveCheck.js"
import { makeProgressBar, type Terminal } from "./Progress.js"

export { checkArchive, FileError, InvalidArchive }

/** WRITE requests per read: a read is handed whole to the check, so fewer, larger reads mean fewer messages. */
const REQUESTS_PER_READ = 8

export interface Uploaded {
  readonly hash: string
  readonly bytes: number
}

/**
 * Uploads `file` over a new SFTP session on `client` (ended with the scope), checking it is a
 * tar.gz and hashing it on the way. Draws a progress bar on `progressTo` when it is a TTY.
 */
export const uploadFile = (
  client: Client,
  file: string,
  progressTo: Terminal
): Effect.Effect<Uploaded, SshError | InvalidArchive | FileError, Scope.Scope> =>
  Effect.gen(function* () {
    const fileError = (cause: unknown) => new FileError({ file, reason: (cause as Error).message, cause })
    // stat before open: opening a FIFO would wait for a writer.
    const st = yield* Effect.tryPromise({ try: () => fs.promises.stat(file), catch: fileError })
    if (!st.isFile()) return yield* new FileError({ file, reason: "not a regular file" })
    const fh = yield* Effect.acquireRelease(Effect.tryPromise({ try: () => fs.promises.open(file, "r"), catch: fileError }), (h) =>
      Effect.promise(() => h.close())
    )
    const name = path.basename(file)
    /** `sending` under a progress bar. */
    const withBar = <E>(sending: (onProgress: (sent: number) => void) => Effect.Effect<number, E>) =>
      Effect.suspend(() => {
        const bar = makeProgressBar(st.size, progressTo)
        return sending(bar.update).pipe(
          Effect.tapError(() => Effect.sync(bar.clear)),
          Effect.onInterrupt(() => Effect.sync(bar.clear)),
          Effect.tap(() => Effect.sync(bar.finish))
        )
      })
    const whole = st.size <= INLINE_MAX ? yield* Effect.tryPromise({ try: () => readUpTo(fh, INLINE_MAX), catch: fileError }) : undefined
    if (whole !== undefined) {
      const [checked, sftp] = yield* Effect.all([checkArchiveBytes(whole, name), openSftp(client)], { concurrency: 2 })
      const n = yield* withBar((onProgress) => upload(sftp, name, Stream.make(whole), { onProgress }))
      return { hash: checked.hash, bytes: n }
    }
    // The worker starts while the SFTP session opens; reads are whole WRITE requests, at most DEFAULT_CHUNK each.
    const [check, sftp] = yield* Effect.all([startArchiveCheck(name, REQUESTS_PER_READ * DEFAULT_CHUNK), openSftp(client)], { concurrency: 2 })
    // Each read goes into a buffer the check lends: upload() sends views of it and ssh2 copies them into
    // packets before the next pull, which then hands the chunk to the check (read in place, then given back).
    const size = REQUESTS_PER_READ * requestSize(sftp)
    let position = 0
    let sent: Buffer | undefined
    const pull = Effect.gen(function* () {
      if (sent !== undefined) {
        const chunk = sent
        sent = undefined
        yield* check.push(chunk)
      }
      const buf = yield* check.buffer
      const { bytesRead } = yield* Effect.tryPromise({ try: () => fh.read(buf, 0, size, position), catch: fileError })
      if (bytesRead === 0) return yield* Effect.fail(Option.none())
      position += bytesRead
      sent = buf.subarray(0, bytesRead)
      return sent
    }).pipe(Effect.mapError((e) => (Option.isOption(e) ? e : Option.some(e))))
    let checked: { readonly hash: string; readonly bytes: number } | undefined
    const source = Stream.repeatEffectOption(pull).pipe(
      // The verdict must be in before the stream ends: upload() CLOSEs only after a clean end.
      Stream.concat(Stream.drain(Stream.fromEffect(Effect.map(check.end, (c) => void (checked = c)))))
    )
    const n = yield* withBar((onProgress) =>
      Effect.raceFirst(
        upload(sftp, name, source, { onProgress }),
        // A bad archive fails the race at once, which interrupts the upload (no CLOSE).
        check.failed
      )
    )
    if (checked === undefined || checked.bytes !== n) return yield* Effect.die(`uploaded ${n} bytes, checked ${checked?.bytes}`)
    return { hash: checked.hash, bytes: n }
  })
