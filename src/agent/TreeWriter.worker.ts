// The worker side of TreeWriter.ts: executes each batch's ops in order (TreeOps.ts); the first failing op
// stops it (nothing after it is done) and is reported with its index. Runs as a module of its own
// (src/fs/WorkerModule.ts).
import { parentPort, workerData } from "node:worker_threads"
import { type RunResult, TreeOps } from "./TreeOps.js"
import type { Op } from "./TreeWriter.js"

export interface Batch {
  readonly id: number
  readonly ops: ReadonlyArray<Op>
  /** Where the batch's file data lies in the shared ring, or a copy that did not fit. */
  readonly start: number
  readonly len: number
  readonly copy: Uint8Array | undefined
}
export type BatchReply = { readonly id: number } & RunResult
export interface WriterData {
  readonly ring: SharedArrayBuffer
}

const { ring } = workerData as WriterData
const ops = new TreeOps()
parentPort!.on("message", ({ id, ops: batch, start, len, copy }: Batch) => {
  // After a failure the worker does nothing more and stays silent: the main thread has the first one.
  if (ops.stopped) return
  // Write offsets are relative to the batch's data: its region of the ring (or a copy that did not fit).
  const buf = copy !== undefined ? Buffer.from(copy) : len > 0 ? Buffer.from(ring, start, len) : undefined
  parentPort!.postMessage({ id, ...ops.runBatch(batch, buf) } satisfies BatchReply)
})
