// The sha256 of an upload's temp file, computed off the registry's main thread: FileHasher's worker reads
// back (from the page cache) the prefix of the file whose writes have all completed, while the main
// thread goes on decrypting and writing. Hashing on the main thread was a quarter of its CPU per uploaded
// byte, and the main thread is what limits an upload. The hash is of the file itself, so it is trusted
// only while no write lands on bytes the worker may already have read: a write that overlaps an earlier
// one (or the reported prefix) stops the streaming hash, and the whole file is then hashed at CLOSE (in
// the worker too; on the main thread only if the worker is gone). Nothing is copied: memory per upload is
// one entry per write beyond the completed prefix, at most MAX_SPANS. The same read-back also runs the
// layer check (FileHasher's `check`), so at CLOSE the verdict is known with the hash and handed to
// `onVerdict` (LayerVerdicts.record): addver then reads nothing again. Only a streamed hash carries a
// verdict: after an overlap, or for a small file (hashed at CLOSE), addver checks the file as before.
import { Effect } from "effect"
import type { WorkerReply } from "../archive/LayerCheck.js"
import type { Sha256 } from "../domain/Names.js"
import { type FileHash, hashFile as hashInWorker, hashOnThisThread } from "../fs/FileHasher.js"

/** Writes beyond the completed prefix tracked per upload; past it (a client scattering writes), hash at CLOSE. */
export const MAX_SPANS = 4096
/** The worker is told about the completed prefix once it has grown by this much (one message per MiB). */
const REPORT_EVERY = 1024 * 1024

export interface UploadHash {
  /** A write of [offset, offset + length) was accepted (before it is written). */
  readonly arrived: (offset: number, length: number) => void
  /** That write completed (the same offset and length). */
  readonly wrote: (offset: number, length: number) => void
  /** The sha256 of the file's first `size` bytes, once every write has completed and the file is fsynced. */
  readonly digest: (size: number) => Effect.Effect<Sha256, Error>
  /** Ends it without a result; the file is no longer read. */
  readonly abandon: () => void
}

/** The file's first `size` bytes hashed by the worker from the start (the file is complete and fsynced); here if it cannot. */
const hashWhole = (path: string, size: number): Effect.Effect<Sha256, Error> =>
  Effect.tryPromise({ try: () => hashInWorker(path).digest(size), catch: (e) => e as Error }).pipe(
    Effect.catchAll(() => Effect.tryPromise({ try: () => hashOnThisThread(path, size), catch: (e) => e as Error })),
    Effect.map((hex) => hex as Sha256)
  )

/**
 * The completed prefix of a file written by possibly reordered, concurrent writes: [0, done) is written
 * and every write in it completed. `arrived` refuses (false) a write that overlaps the prefix or another
 * write (the file's bytes there may change after being read), or one past MAX_SPANS pending.
 */
export class CompletedPrefix {
  done = 0
  /** End of the furthest write accepted: a write starting there overlaps nothing. */
  private furthest = 0
  /** Writes beyond `done`, by offset: their end, and whether they completed. */
  private readonly spans = new Map<number, { readonly end: number; finished: boolean }>()

  get pending(): number {
    return this.spans.size
  }

  arrived(offset: number, length: number): boolean {
    if (length === 0) return true
    const end = offset + length
    if (offset < this.done || this.spans.size >= MAX_SPANS) return false
    if (offset < this.furthest) for (const [start, s] of this.spans) if (start < end && offset < s.end) return false
    this.spans.set(offset, { end, finished: false })
    this.furthest = Math.max(this.furthest, end)
    return true
  }

  /** The write at `offset` (accepted by `arrived` with this length) completed; returns `done`. */
  wrote(offset: number, length: number): number {
    const s = length === 0 ? undefined : this.spans.get(offset)
    if (s === undefined) return this.done
    s.finished = true
    for (let next = this.spans.get(this.done); next !== undefined && next.finished; next = this.spans.get(this.done)) {
      this.spans.delete(this.done)
      this.done = next.end
    }
    return this.done
  }
}

export interface UploadHashOptions {
  /** Bytes the completed prefix grows by between two reports to the worker. */
  readonly reportEvery?: number
  /** Given the layer check's verdict on a streamed hash's bytes, before `digest` succeeds. */
  readonly onVerdict?: (hash: Sha256, verdict: WorkerReply) => Effect.Effect<void>
}

/** Starts hashing the upload written to `path` (the file exists, empty) as its writes complete. */
export const uploadHash = (path: string, opts: UploadHashOptions = {}): UploadHash => {
  const reportEvery = opts.reportEvery ?? REPORT_EVERY
  let fh: FileHash | undefined = hashInWorker(path, opts.onVerdict !== undefined ? { check: "" } : {})
  const prefix = new CompletedPrefix()
  let reported = 0
  const untrust = () => {
    fh?.abandon()
    fh = undefined
  }
  return {
    arrived: (offset, length) => {
      if (fh !== undefined && !prefix.arrived(offset, length)) untrust()
    },
    wrote: (offset, length) => {
      if (fh === undefined) return
      const done = prefix.wrote(offset, length)
      if (done - reported >= reportEvery) {
        reported = done
        fh.written(done)
      }
    },
    digest: (size) =>
      Effect.suspend(() => {
        const streamed = fh
        fh = undefined
        // Trusted only if the completed prefix is the whole file: no hole, no write left unmerged.
        if (streamed === undefined || prefix.done !== size || prefix.pending > 0) {
          streamed?.abandon()
          return hashWhole(path, size)
        }
        return Effect.tryPromise({ try: () => streamed.digest(size), catch: (e) => e as Error }).pipe(
          Effect.map((hex) => hex as Sha256),
          Effect.tap((hash) => {
            const verdict = streamed.verdict()
            return verdict !== undefined && opts.onVerdict !== undefined ? opts.onVerdict(hash, verdict) : Effect.void
          }),
          Effect.catchAll(() => hashWhole(path, size))
        )
      }),
    abandon: untrust
  }
}
