// sha256 of a file being written (an agent's download, an upload to the registry), on a worker thread
// beside the main thread that decrypts and writes it: hashing was a quarter of the agent's CPU per
// downloaded byte (bench/profile.ts -mode agent-deploy), all of it in series with the SSH path. The worker
// reads back what has been written (from the page cache), so no buffer is shared or copied between
// threads: sharing the read buffers made every copy into them several times slower. One worker serves
// every hash of the process, and does not keep the process alive while no hash is running.
import type { Worker } from "node:worker_threads"
import type { HashReply, HashRequest } from "./FileHasher.worker.js"
import { startWorker } from "./WorkerModule.js"

export interface FileHash {
  /** The first `bytes` bytes of the file are written: hash them (in the background). */
  readonly written: (bytes: number) => void
  /** The sha256 (lowercase hex) of the first `bytes` bytes; the hash is finished after this. */
  readonly digest: (bytes: number) => Promise<string>
  /** Ends it without a result (a failed download). */
  readonly abandon: () => void
}

let worker: Worker | undefined
let active = 0
let nextId = 0
const waiting = new Map<number, { resolve: (hex: string) => void; reject: (e: Error) => void }>()

const failAll = (e: Error) => {
  for (const w of waiting.values()) w.reject(e)
  waiting.clear()
  worker = undefined
}

const send = (w: Worker, m: HashRequest) => w.postMessage(m)

const getWorker = (): Worker => {
  if (worker !== undefined) return worker
  const w = startWorker(import.meta.url, "fs/FileHasher.worker")
  w.on("message", (r: HashReply) => {
    const p = waiting.get(r.id)
    waiting.delete(r.id)
    if (p === undefined) return
    if ("hex" in r) p.resolve(r.hex)
    else p.reject(new Error(`hashing failed: ${r.error}`))
  })
  w.on("error", (e) => failAll(e))
  w.on("exit", () => failAll(new Error("hashing stopped")))
  w.unref()
  worker = w
  return w
}

/** Starts hashing the file at `file` as it is written (by this process, through another descriptor). */
export const hashFile = (file: string): FileHash => {
  const w = getWorker()
  if (active++ === 0) w.ref()
  const id = nextId++
  let finished = false
  const finish = () => {
    if (finished) return false
    finished = true
    if (--active === 0) worker?.unref()
    return true
  }
  send(w, { id, op: "open", path: file })
  return {
    written: (bytes) => {
      if (!finished && worker === w) send(w, { id, op: "written", bytes })
    },
    digest: (bytes) =>
      new Promise<string>((resolve, reject) => {
        if (!finish()) return reject(new Error("hash already finished"))
        if (worker !== w) return reject(new Error("hashing stopped"))
        waiting.set(id, { resolve, reject })
        send(w, { id, op: "digest", bytes })
      }),
    abandon: () => {
      if (finish() && worker === w) send(w, { id, op: "abandon" })
    }
  }
}
