// `deployctl addver -file`: the file is uploaded, and — on a worker thread reading the same file
// (ArchiveCheck.ts) — hashed and checked to be a valid tar.gz. The check's verdict is awaited
// before the upload is CLOSEd, and a bad archive stops the upload at once: it is never completed
// on the registry (fault 9), and addver is never sent for it. Memory stays flat for any size.
import { Effect, Fiber, Option, Stream, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Client } from "ssh2"
import type { SshError } from "../ssh/SshError.js"
import { openSftp, requestSize } from "../ssh/Sftp.js"
import { upload } from "../ssh/SftpWrite.js"
import { checkArchive, FileError, InvalidArchive } from "./ArchiveCheck.js"
import { makeProgressBar, type Terminal } from "./Progress.js"

export { checkArchive, FileError, InvalidArchive }

/**
 * Reads `file` `size` bytes at a time into ONE reused buffer: upload() copies each request into
 * its packet before pulling again (Sftp.ts), so no allocation per chunk is needed.
 */
const readReused = (file: string, size: number): Stream.Stream<Uint8Array, FileError> =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const fileError = (cause: unknown) => new FileError({ file, reason: (cause as Error).message, cause })
      const fh = yield* Effect.acquireRelease(Effect.tryPromise({ try: () => fs.promises.open(file, "r"), catch: fileError }), (h) =>
        Effect.promise(() => h.close())
      )
      const buf = Buffer.allocUnsafe(size)
      let position = 0
      const pull = Effect.tryPromise({ try: () => fh.read(buf, 0, size, position), catch: fileError }).pipe(
        Effect.mapError(Option.some),
        Effect.flatMap(({ bytesRead }) => {
          if (bytesRead === 0) return Effect.fail(Option.none())
          position += bytesRead
          return Effect.succeed(buf.subarray(0, bytesRead))
        })
      )
      return Stream.repeatEffectOption(pull)
    })
  )

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
    const st = yield* Effect.tryPromise({
      try: () => fs.promises.stat(file),
      catch: (cause) => new FileError({ file, reason: (cause as Error).message, cause })
    })
    if (!st.isFile()) return yield* new FileError({ file, reason: "not a regular file" })
    const name = path.basename(file)
    const sftp = yield* openSftp(client)
    const check = yield* Effect.forkScoped(checkArchive(file, name))
    // Reads of whole WRITE requests: upload() sends views of the buffer, copying nothing more.
    const source = readReused(file, 8 * requestSize(sftp)).pipe(
      // The verdict must be in before the stream ends: upload() CLOSEs only after a clean end.
      Stream.concat(Stream.drain(Stream.fromEffect(Fiber.join(check))))
    )
    const bar = makeProgressBar(st.size, progressTo)
    const n = yield* Effect.raceFirst(
      upload(sftp, name, source, { onProgress: bar.update }),
      // A bad archive fails the race at once, which interrupts the upload (no CLOSE).
      Effect.zipRight(Fiber.join(check), Effect.never)
    ).pipe(
      Effect.tapError(() => Effect.sync(bar.clear)),
      Effect.onInterrupt(() => Effect.sync(bar.clear))
    )
    const checked = yield* Fiber.join(check)
    bar.finish()
    // The hash is of the worker's read; both reads must have seen the same file.
    const after = yield* Effect.tryPromise({ try: () => fs.promises.stat(file), catch: (cause) => new FileError({ file, reason: (cause as Error).message, cause }) })
    if (checked.bytes !== n || after.size !== st.size || after.mtimeMs !== st.mtimeMs) {
      return yield* new FileError({ file, reason: "the file changed while it was being uploaded" })
    }
    return { hash: checked.hash, bytes: n }
  })
