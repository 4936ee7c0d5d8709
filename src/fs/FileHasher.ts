// sha256 of a file being written (an agent's download, an upload to the registry), on a worker thread
// beside the main thread that decrypts and writes it: hashing was a quarter of the agent's CPU per
// downloaded byte (bench/profile.ts -mode agent-deploy), all of it in series with the SSH path. The worker
// reads back what has been written (from the page cache), so no buffer is shared or copied between
// threads: sharing the read buffers made every copy into them several times slower. One worker serves
// every hash of the process, and does not keep the process alive while no hash is running.
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
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

/** Whether this process has started the hashing worker (tests: small files never start it). */
export const workerStarted = (): boolean => worker !== undefined

/**
 * Up to this size a file is hashed on the main thread at digest, and no worker starts: a worker's start
 * costs ~30 ms of CPU, hashing 256 KiB well under 1 ms (most layers an agent fetches are small).
 */
export const INLINE_MAX = 256 * 1024

/**
 * The first `bytes` bytes of `file`, hashed on the calling thread; fails as the worker does
 * (FileHasher.worker.ts). Small files, and the last resort of a caller whose worker cannot hash.
 */
export const hashOnThisThread = async (file: string, bytes: number): Promise<string> => {
  const h = createHash("sha256")
  try {
    const fh = await fs.open(file, "r")
    try {
      const buf = Buffer.allocUnsafe(Math.min(bytes, INLINE_MAX) || 1)
      let pos = 0
      while (pos < bytes) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - pos), pos)
        if (bytesRead === 0) throw new Error(`the file ended at ${pos}, expected ${bytes} bytes`)
        h.update(buf.subarray(0, bytesRead))
        pos += bytesRead
      }
    } finally {
      await fh.close()
    }
  } catch (e) {
    throw new Error(`hashing failed: ${e instanceof Error ? e.message : String(e)}`)
  }
  return h.digest("hex")
}

/**
 * Starts hashing the file at `file` as it is written (by this process, through another descriptor). The
 * worker takes it over once more than INLINE_MAX bytes are written; a smaller file is hashed at digest.
 */
export const hashFile = (file: string): FileHash => {
  let w: Worker | undefined
  let id = -1
  let finished = false
  /** The worker could not start: `written` does nothing, `digest` fails with this. */
  let cannot: Error | undefined
  const handOver = (bytes: number) => {
    try {
      w = getWorker()
    } catch (e) {
      cannot = e instanceof Error ? e : new Error(String(e))
      return
    }
    if (active++ === 0) w.ref()
    id = nextId++
    send(w, { id, op: "open", path: file })
    send(w, { id, op: "written", bytes })
  }
  const finish = () => {
    if (finished) return false
    finished = true
    if (w !== undefined && --active === 0) worker?.unref()
    return true
  }
  return {
    written: (bytes) => {
      if (finished || cannot !== undefined) return
      if (w === undefined) {
        if (bytes > INLINE_MAX) handOver(bytes)
      } else if (worker === w) send(w, { id, op: "written", bytes })
    },
    digest: (bytes) =>
      new Promise<string>((resolve, reject) => {
        if (finished) return reject(new Error("hash already finished"))
        if (w === undefined && cannot === undefined) {
          if (bytes <= INLINE_MAX) {
            finish()
            return void hashOnThisThread(file, bytes).then(resolve, reject)
          }
          handOver(bytes)
        }
        finish()
        if (cannot !== undefined) return reject(new Error(`hashing could not start: ${cannot.message}`))
        if (worker !== w) return reject(new Error("hashing stopped"))
        waiting.set(id, { resolve, reject })
        send(w!, { id, op: "digest", bytes })
      }),
    abandon: () => {
      if (finish() && w !== undefined && worker === w) send(w, { id, op: "abandon" })
    }
  }
}
