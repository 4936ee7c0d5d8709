// The tar.gz check and the sha256 of `deployctl addver -file`, on a worker thread that reads the
// file on its own (from the page cache, as the upload reads it): inflating, the strict layer reader
// (src/archive, the same one the agent and the registry's addver use) and hashing then cost the main
// thread nothing, and the main thread — which frames, encrypts and sends the SFTP packets and was
// the bottleneck — only reads and uploads.
import { Data, Effect } from "effect"
import { checkLayerInWorker } from "../archive/LayerCheck.js"

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

/**
 * Checks that `file` is a layer an agent accepts (one gzip member of one tar, every entry passing
 * the reader's rules) holding at least one entry — an empty archive is valid but almost surely a
 * mistake here — and hashes it. `name` is how messages call the file. Interrupting stops the worker.
 */
export const checkArchive = (file: string, name: string = file): Effect.Effect<Checked, InvalidArchive | FileError> =>
  checkLayerInWorker(file, name, { hash: true }).pipe(
    Effect.catchTags({
      // The label is the file's name: the reason is the refusal without its "layer <name>: ".
      LayerRefused: (e) => Effect.fail(new InvalidArchive({ file: name, reason: e.message.slice(`layer ${name}: `.length) })),
      LayerUnreadable: (e) => Effect.fail(new FileError({ file: name, reason: e.reason }))
    }),
    Effect.filterOrFail(
      (c) => c.entries > 0,
      () => new InvalidArchive({ file: name, reason: "the archive holds no entries" })
    ),
    Effect.map((c) => ({ hash: c.hash!, bytes: c.bytes }))
  )
