// The Unpacker's file-system calls, run in order on a worker thread (TreeOps.ts). The main thread parses the archive
// and decides every path from its in-memory model of the tree (Unpacker.ts); this only executes the
// decisions. Creating 20,000 small files is mostly syscalls (open, write, futimes, close): on the main
// thread they queued behind tar parsing; here they overlap with it (bench/smallfiles.ts: 1.7x GNU tar
// before, on tmpfs). Ops go in batches, a batch's file data in one region of a ring buffer shared with
// the worker, so a batch costs one message and no allocation (transferring an ArrayBuffer per batch made
// the main thread spend 40% of a large layer's unpack in garbage collection). The first failing op stops the worker: nothing after it is done, and the error
// names the entry it belonged to.
// A small unpack (the Unpacker decides: SMALL_UNPACK) runs its ops on the main thread instead, as each
// batch is flushed: starting the worker costs ~50 ms of CPU, more than a small layer's whole unpack.
import type { Worker } from "node:worker_threads"
import { startWorker } from "../fs/WorkerModule.js"
import { TreeOps } from "./TreeOps.js"
import type { Batch, BatchReply, WriterData } from "./TreeWriter.worker.js"

/** What a file's close sets. Times are seconds since the epoch (fractional, may be negative). */
export interface FileMeta {
  readonly uid?: number
  readonly gid?: number
  readonly chmod?: number
  readonly atime?: number
  readonly mtime?: number
}


export type Op =
  | { readonly k: "mkdir"; readonly path: string; readonly mode: number }
  | { readonly k: "rmdir"; readonly path: string }
  | { readonly k: "unlink"; readonly path: string }
  /** Creates a new file (O_EXCL|O_NOFOLLOW) as `slot`; later write/close ops name the slot. */
  | { readonly k: "open"; readonly slot: number; readonly path: string; readonly mode: number }
  | { readonly k: "write"; readonly slot: number; readonly off: number; len: number }
  | ({ readonly k: "close"; readonly slot: number } & FileMeta)
  /** open + close of a file without content: one op for the commonest entry of a large tree. */
  | ({ readonly k: "empty"; readonly path: string; readonly mode: number } & FileMeta)
  | { readonly k: "symlink"; readonly target: string; readonly path: string; readonly uid?: number; readonly gid?: number; readonly atime?: number; readonly mtime?: number }
  | { readonly k: "link"; readonly existing: string; readonly path: string }
  /** Sets a directory's metadata through a descriptor (O_DIRECTORY|O_NOFOLLOW): never through a link. */
  | { readonly k: "dirmeta"; readonly path: string; readonly mode: number; readonly keepInheritedSetgid?: boolean; readonly uid?: number; readonly gid?: number; readonly atime: number; readonly mtime: number }
  /** Sets a directory's rwx bits (keeping set-id and sticky) through a descriptor, if they differ. */
  | { readonly k: "dirrwx"; readonly path: string; readonly rwx: number }
  /** Sets a directory's mtime to now, as replacing an entry in it does (GNU tar's delayed links). */
  | { readonly k: "touch"; readonly path: string }

/** What an op's failure means for the archive: an errno code mapped to a refusal reason. */
export type Refusals = Readonly<Partial<Record<string, string>>>

/** A failed op, attributed to the archive entry that asked for it. */
export class OpFailed extends Error {
  constructor(
    readonly entry: string,
    readonly code: string | undefined,
    message: string,
    /** Set when the failure is the archive's fault (e.g. replacing a non-empty directory). */
    readonly refusal: string | undefined
  ) {
    super(message)
  }
}

/**
 * Allocation in a ring of `size` bytes for regions that are released oldest first (the worker finishes
 * batches in order): each region is contiguous, and none overlaps one still in use.
 */
export class RingRegions {
  private readonly inUse: Array<{ readonly start: number; readonly end: number }> = []

  constructor(
    private readonly size: number,
    private readonly maxRegion: number
  ) {}

  /** Reserves `n` bytes after the regions in use; undefined when they do not fit (or n is 0 or too large). */
  place(n: number): number | undefined {
    if (n <= 0 || n > this.maxRegion) return undefined
    const first = this.inUse[0]
    const last = this.inUse[this.inUse.length - 1]
    let start: number | undefined
    if (first === undefined || last === undefined) start = 0
    else if (last.end > first.start) {
      // Not wrapped: free space is [last.end, size) and then [0, first.start).
      if (this.size - last.end >= n) start = last.end
      else if (first.start >= n) start = 0
    } else if (first.start - last.end >= n) start = last.end // wrapped: free space is [last.end, first.start)
    if (start !== undefined) this.inUse.push({ start, end: start + n })
    return start
  }

  /** Frees the oldest region in use. */
  releaseOldest(): void {
    this.inUse.shift()
  }
}

interface Sent {
  readonly entries: ReadonlyArray<string>
  readonly refusals: ReadonlyArray<Refusals | undefined>
  readonly bytes: number
  /** Whether its data occupies the oldest region of the ring (freed when the worker is done with it). */
  readonly inRing: boolean
}

/** Bytes of file data sent but not yet written before the source should pause. */
export const HIGH_WATER = 16 * 1024 * 1024
/**
 * The shared ring: room for HIGH_WATER bytes in flight plus the batch that crosses it and the space lost
 * when a batch wraps. A batch is the file data of one parser input chunk (256 KiB of inflated tar, at most
 * 1 MiB of a plain one); a larger one is sent as a copy.
 */
const MAX_BATCH = 1024 * 1024
const RING = HIGH_WATER + 3 * MAX_BATCH
/** Layer files up to this many bytes in all are unpacked on the main thread (see the header). */
export const SMALL_UNPACK = 256 * 1024

export class TreeWriter {
  private readonly ring: SharedArrayBuffer | undefined
  private readonly worker: Worker | undefined
  /** The main thread's runner, when there is no worker. */
  private readonly here: TreeOps | undefined
  /** Where the data of the batches in flight lies in the ring. */
  private readonly regions = new RingRegions(RING, MAX_BATCH)
  private ops: Array<Op> = []
  private entries: Array<string> = []
  private refusals: Array<Refusals | undefined> = []
  private chunks: Array<Uint8Array> = []
  private bytes = 0
  private nextId = 0
  private readonly sent = new Map<number, Sent>()
  private inFlightBytes = 0
  private failure: Error | undefined
  private waiters: Array<() => void> = []
  private nextSlot = 0

  /** `onThisThread`: run the ops here, as they are flushed, and start no worker. */
  constructor(options: { readonly onThisThread?: boolean } = {}) {
    if (options.onThisThread) {
      this.here = new TreeOps()
      return
    }
    this.ring = new SharedArrayBuffer(RING)
    const worker = (this.worker = startWorker(import.meta.url, "agent/TreeWriter.worker", { workerData: { ring: this.ring } satisfies WriterData }))
    worker.on("message", (m: BatchReply) => {
      const s = this.sent.get(m.id)
      this.sent.delete(m.id)
      if (s === undefined) return
      this.inFlightBytes -= s.bytes
      if (s.inRing) this.regions.releaseOldest()
      if ("failedAt" in m && this.failure === undefined) {
        const refusal = m.code === undefined ? undefined : s.refusals[m.failedAt]?.[m.code]
        this.failure = new OpFailed(s.entries[m.failedAt] ?? "", m.code, m.message, refusal)
      }
      this.wake()
    })
    worker.on("error", (e) => {
      this.failure ??= e
      this.wake()
    })
    worker.on("exit", () => {
      this.failure ??= new Error("the file writer stopped")
      this.wake()
    })
  }

  /** The first failure the worker reported, if any. */
  get failed(): Error | undefined {
    return this.failure
  }

  /** A slot number for a new file's open/write/close ops. */
  slot(): number {
    return this.nextSlot++
  }

  /** Queues `op` on behalf of archive entry `entry`; `refusals` maps errno codes to refusal reasons. */
  push(entry: string, op: Op, refusals?: Refusals): void {
    this.ops.push(op)
    this.entries.push(entry)
    this.refusals.push(refusals)
  }

  /** Queues file data for `slot` (copied when the batch is sent; the caller may reuse `data` after that). */
  write(entry: string, slot: number, data: Uint8Array): void {
    if (data.byteLength === 0) return
    const last = this.ops[this.ops.length - 1]
    // Contiguous data for the same file: one write call.
    if (last !== undefined && last.k === "write" && last.slot === slot && last.off + last.len === this.bytes) last.len += data.byteLength
    else this.push(entry, { k: "write", slot, off: this.bytes, len: data.byteLength })
    this.chunks.push(data)
    this.bytes += data.byteLength
  }

  /** Sends what is queued as one batch (or, without a worker, runs it now). */
  flush(): void {
    if (this.ops.length === 0 || this.failure !== undefined) return
    if (this.here !== undefined) return this.runHere(this.here)
    const n = this.bytes
    const start = this.regions.place(n)
    let copy: Uint8Array | undefined
    if (n > 0) {
      // Did not fit in the ring (a batch larger than MAX_BATCH): sent as a copy (structured clone).
      const view = start !== undefined ? new Uint8Array(this.ring!, start, n) : (copy = new Uint8Array(n))
      let off = 0
      for (const c of this.chunks) {
        view.set(c, off)
        off += c.byteLength
      }
    }
    const id = this.nextId++
    this.sent.set(id, { entries: this.entries, refusals: this.refusals, bytes: n, inRing: start !== undefined })
    this.inFlightBytes += n
    this.worker!.postMessage({ id, ops: this.ops, start: start ?? 0, len: n, copy } satisfies Batch)
    this.clearQueue()
  }

  private runHere(here: TreeOps): void {
    const data = this.bytes > 0 ? Buffer.concat(this.chunks, this.bytes) : undefined
    const r = here.runBatch(this.ops, data)
    if ("failedAt" in r) {
      const refusal = r.code === undefined ? undefined : this.refusals[r.failedAt]?.[r.code]
      this.failure = new OpFailed(this.entries[r.failedAt] ?? "", r.code, r.message, refusal)
    }
    this.clearQueue()
    this.wake()
  }

  private clearQueue(): void {
    this.ops = []
    this.entries = []
    this.refusals = []
    this.chunks = []
    this.bytes = 0
  }

  /** Whether the source should pause until `whenRoom` calls back. */
  full(): boolean {
    return this.inFlightBytes > HIGH_WATER && this.failure === undefined
  }

  /** Calls `f` once the data in flight fell below the high-water mark, or on failure. */
  whenRoom(f: () => void): void {
    if (!this.full()) return f()
    const check = () => (this.full() ? this.waiters.push(check) : f())
    this.waiters.push(check)
  }

  /** Sends what is queued and resolves once the worker did all of it; rejects with its first failure. */
  drain(): Promise<void> {
    this.flush()
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.failure !== undefined) reject(this.failure)
        else if (this.sent.size === 0) resolve()
        else this.waiters.push(check)
      }
      check()
    })
  }

  /** Stops the worker; resolves once its thread is gone (so no file is created after this). Without one, closes the files left open. */
  async close(): Promise<void> {
    this.here?.closeAll()
    await this.worker?.terminate()
  }

  private wake(): void {
    const ws = this.waiters
    this.waiters = []
    for (const w of ws) w()
  }
}
