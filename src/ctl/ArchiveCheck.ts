// The tar.gz check and the sha256 of `deployctl addver -file`, on a worker thread: inflating, the
// strict layer reader (src/archive, the same one the agent and the registry's addver use) and hashing
// then cost the main thread nothing, and the main thread — which frames, encrypts and sends the SFTP
// packets and is the bottleneck — only reads and uploads. `startArchiveCheck` is fed the chunks the
// upload reads (the file is read once); `checkArchive` reads a file on its own. A small file (at most
// INLINE_MAX) is checked on the main thread instead, `checkArchiveBytes`: a worker's start costs more
// than that check (a bomb still goes on to a worker, LayerCheck.ts's budget).
import { Data, Effect, type Scope } from "effect"
import { checkLayer, type Checked as LayerChecked } from "../archive/LayerCheck.js"
import { checkLayerBytes, feedLayerCheck } from "../archive/LayerFeed.js"
import type { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"

/** The file is not a readable .tar.gz; `reason` says what broke. */
export class InvalidArchive extends Data.TaggedError("InvalidArchive")<{ readonly file: string; readonly reason: string }> {
  get message() {
    return `${this.file} is not a valid .tar.gz (${this.reason}); no version was added`
  }
}

/** The local file cannot be read. */
export class FileError extends Data.TaggedError("FileError")<{ readonly file: string; readonly reason: string; readonly cause?: unknown }> {
  get message() {
    return `cannot read ${this.file}: ${this.reason}`
  }
}

export interface Checked {
  /** sha256 of the whole file, lowercase hex. */
  readonly hash: string
  readonly bytes: number
}

/** The reader's failures as deployctl's: the label is the file's name, so the reason drops "layer <name>: ". */
const asArchiveError = (name: string) => (e: LayerRefused | LayerUnreadable): InvalidArchive | FileError =>
  e._tag === "LayerRefused" ? new InvalidArchive({ file: name, reason: e.message.slice(`layer ${name}: `.length) }) : new FileError({ file: name, reason: e.reason })

/** An empty archive is valid but almost surely a mistake here. */
const notEmpty = (name: string) => <A extends { readonly entries: number }>(c: A): Effect.Effect<A, InvalidArchive> =>
  c.entries > 0 ? Effect.succeed(c) : Effect.fail(new InvalidArchive({ file: name, reason: "the archive holds no entries" }))

/** The reader's verdict as deployctl's. */
const asArchiveCheck = (name: string) => (checked: Effect.Effect<LayerChecked, LayerRefused | LayerUnreadable>): Effect.Effect<Checked, InvalidArchive | FileError> =>
  checked.pipe(
    Effect.mapError(asArchiveError(name)),
    Effect.flatMap(notEmpty(name)),
    Effect.map((c) => ({ hash: c.hash!, bytes: c.bytes }))
  )

/**
 * Checks that `file` is a layer an agent accepts (one gzip member of one tar, every entry passing
 * the reader's rules) holding at least one entry, and hashes it. `name` is how messages call the
 * file. Interrupting stops the worker.
 */
export const checkArchive = (file: string, name: string = file): Effect.Effect<Checked, InvalidArchive | FileError> =>
  asArchiveCheck(name)(checkLayer(file, name, { hash: true }))

/** The same check of a whole file's `bytes` (a small file, read whole). */
export const checkArchiveBytes = (bytes: Buffer, name: string): Effect.Effect<Checked, InvalidArchive | FileError> =>
  asArchiveCheck(name)(checkLayerBytes(bytes, name, { hash: true }))

export interface ArchiveFeed {
  /** A buffer to read the file's next bytes into (LayerFeed.buffer). */
  readonly buffer: Effect.Effect<Buffer, InvalidArchive | FileError>
  /** The next bytes of the file, at the start of the last `buffer`, which is the check's from now on (LayerFeed.push). */
  readonly push: (chunk: Buffer) => Effect.Effect<void, InvalidArchive | FileError>
  /** Every byte was pushed: the verdict and the sha256 of the bytes pushed. */
  readonly end: Effect.Effect<Checked, InvalidArchive | FileError>
  /** Fails as soon as the check fails; never succeeds. */
  readonly failed: Effect.Effect<never, InvalidArchive | FileError>
}

/** The same check as checkArchive over chunks of up to `chunkSize` bytes read into its buffers, on a worker stopped with the scope. */
export const startArchiveCheck = (name: string, chunkSize: number): Effect.Effect<ArchiveFeed, FileError, Scope.Scope> =>
  feedLayerCheck(name, { hash: true, chunkSize }).pipe(
    Effect.mapError((e) => new FileError({ file: name, reason: e.reason })),
    Effect.map((feed) => ({
      buffer: Effect.mapError(feed.buffer, asArchiveError(name)),
      push: (chunk: Buffer) => Effect.mapError(feed.push(chunk), asArchiveError(name)),
      end: asArchiveCheck(name)(feed.end),
      failed: Effect.mapError(feed.failed, asArchiveError(name))
    }))
  )
