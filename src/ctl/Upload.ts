// `deployctl addver -file`: one pass over the file feeds three consumers — the SFTP upload, the
// sha256, and a tar.gz check (gunzip → tar header parser, entries drained) — with back-pressure
// from the slowest, so a 2 GiB file streams in flat memory. The check's verdict is awaited
// before the upload is CLOSEd: a bad archive is never completed on the registry (fault 9), and
// addver is never sent for it.
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Data, Effect, Stream, type Scope } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import type { Client } from "ssh2"
import * as tar from "tar"
import type { SshError } from "../ssh/SshError.js"
import { openSftp, upload } from "../ssh/Sftp.js"
import { makeProgressBar, type Terminal } from "./Progress.js"

/** The file is not a readable .tar.gz; `reason` says what broke. */
export class InvalidArchive extends Data.TaggedError("InvalidArchive")<{ readonly file: string; readonly reason: string }> {
  get message() {
    return `${this.file} is not a valid .tar.gz (${this.reason}); nothing was uploaded`
  }
}

/** The local file cannot be read. */
export class FileError extends Data.TaggedError("FileError")<{ readonly file: string; readonly reason: string; readonly cause?: unknown }> {
  get message() {
    return `cannot read ${this.file}: ${this.reason}`
  }
}

export interface ArchiveCheck {
  /** Feeds bytes; waits while the decompressor is behind; fails as soon as the archive is known bad. */
  readonly feed: (chunk: Uint8Array) => Effect.Effect<void, InvalidArchive>
  /** Ends the input and waits for the verdict. */
  readonly verdict: Effect.Effect<void, InvalidArchive>
}

/** A streaming check that bytes form a gzip-compressed tar archive with at least one valid header. */
export const makeTarGzCheck = (file: string): ArchiveCheck => {
  const gunzip = zlib.createGunzip()
  // strict: header checksum errors and truncation become 'error' instead of 'warn'.
  const parser = new tar.Parser({ strict: true, onReadEntry: (entry) => entry.resume() })
  let failure: InvalidArchive | undefined
  let ended = false
  const waiters = new Set<() => void>()
  const wakeAll = () => {
    for (const w of [...waiters]) w()
  }
  const fail = (err: Error) => {
    failure ??= new InvalidArchive({ file, reason: err.message.replace(/^TAR_\w+: /, "") })
    wakeAll()
  }
  gunzip.on("error", fail)
  parser.on("error", fail)
  parser.on("end", () => {
    ended = true
    wakeAll()
  })
  gunzip.pipe(parser as unknown as NodeJS.WritableStream)

  const waitFor = (ready: () => boolean, register: (wake: () => void) => () => void) =>
    Effect.async<void, InvalidArchive>((resume) => {
      let unregister = () => {}
      const check = () => {
        if (failure) resume(Effect.fail(failure))
        else if (ready()) resume(Effect.void)
        else return false
        waiters.delete(check)
        unregister()
        return true
      }
      if (check()) return
      waiters.add(check)
      unregister = register(check)
      return Effect.sync(() => {
        waiters.delete(check)
        unregister()
      })
    })

  const feed = (chunk: Uint8Array) =>
    Effect.suspend(() => {
      if (failure) return Effect.fail(failure)
      if (gunzip.write(chunk)) return Effect.void
      let drained = false
      return waitFor(
        () => drained,
        (wake) => {
          const onDrain = () => {
            drained = true
            wake()
          }
          gunzip.once("drain", onDrain)
          return () => gunzip.removeListener("drain", onDrain)
        }
      )
    })

  const verdict = Effect.suspend(() => {
    if (!gunzip.writableEnded) gunzip.end()
    return waitFor(
      () => ended,
      () => () => {}
    )
  })
  return { feed, verdict }
}

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
    const sftp = yield* openSftp(client)
    const hash = createHash("sha256")
    const check = makeTarGzCheck(path.basename(file))
    const bytes = NodeStream.fromReadable<FileError, Uint8Array>(
      () => fs.createReadStream(file, { highWaterMark: 1024 * 1024 }),
      (cause) => new FileError({ file, reason: (cause as Error).message, cause })
    )
    const source = bytes.pipe(
      Stream.tap((chunk) => Effect.zipRight(Effect.sync(() => hash.update(chunk)), check.feed(chunk))),
      // The verdict must be in before the stream ends: upload() CLOSEs only after a clean end.
      Stream.concat(Stream.drain(Stream.fromEffect(check.verdict)))
    )
    const bar = makeProgressBar(st.size, progressTo)
    const n = yield* upload(sftp, path.basename(file), source, { onProgress: bar.update }).pipe(
      Effect.tapError(() => Effect.sync(bar.clear)),
      Effect.onInterrupt(() => Effect.sync(bar.clear))
    )
    bar.finish()
    return { hash: hash.digest("hex"), bytes: n }
  })
