// sha256 of a file being written (an agent's download, an upload to the registry), on a worker thread
// beside the main thread that decrypts and writes it: hashing was a quarter of the agent's CPU per
// downloaded byte (bench/profile.ts -mode agent-deploy), all of it in series with the SSH path. The worker
// reads back what has been written (from the page cache), so no buffer is shared or copied between
// threads: sharing the read buffers made every copy into them several times slower. One worker serves
// every hash of the process (one more for hashes that also check a layer: HashServer.ts), and does not
// keep the process alive while no hash is running.
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import type { Worker } from "node:worker_threads"
import type { WorkerReply } from "../archive/LayerCheck.js"
import type { HashReply, HashRequest } from "./HashServer.js"
import { startWorker } from "./WorkerModule.js"

export interface FileHash {
  /** The first `bytes` bytes of the file are written: hash them (in the background). */
  readonly written: (bytes: number) => void
  /** The sha256 (lowercase hex) of the first `bytes` bytes; the hash is finished after this. */
  readonly digest: (bytes: number) => Promise<string>
  /** Ends it without a result (a failed download). */
  readonly abandon: () => void
  /**
   * With `check`: the layer check's verdict on the bytes hashed, once `digest` resolved; undefined when
   * the file was not checked (at most INLINE_MAX bytes, more than MAX_CHECKED at once, no inline inflate).
   */
  readonly verdict: () => WorkerReply | undefined
}

/** Files hashed and checked at once (each check holds ~300 KiB in the worker: the inflater and its output). */
export const MAX_CHECKED = 8
let checked = 0

let nextId = 0

type Waiting = { resolve: (r: { readonly hex: string; readonly verdict?: WorkerReply }) => void; reject: (e: Error) => void }

/** The thread of one worker module, started on first use and shared by every hash of its kind. */
class Pool {
  worker: Worker | undefined
  /** Hashes under way on it: while there is one, it holds the process open. */
  active = 0
  readonly waiting = new Map<number, Waiting>()

  constructor(private readonly module: string) {}

  get(): Worker {
    if (this.worker !== undefined) return this.worker
    const w = startWorker(import.meta.url, this.module)
    w.on("message", (r: HashReply) => {
      const p = this.waiting.get(r.id)
      this.waiting.delete(r.id)
      if (p === undefined) return
      if ("hex" in r) p.resolve(r)
      else p.reject(new Error(`hashing failed: ${r.error}`))
    })
    w.on("error", (e) => this.failAll(e))
    w.on("exit", () => this.failAll(new Error("hashing stopped")))
    w.unref()
    this.worker = w
    return w
  }

  release(): void {
    if (--this.active === 0) this.worker?.unref()
  }

  private failAll(e: Error): void {
    for (const w of this.waiting.values()) w.reject(e)
    this.waiting.clear()
    this.worker = undefined
  }
}

/** Hashing only: a small module, quick to start (agents' downloads). */
const plain = new Pool("fs/FileHasher.worker")
/** Hashing and checking layers (the registry's uploads): the layer reader's modules too. */
const withCheck = new Pool("archive/CheckedHasher.worker")

const send = (w: Worker, m: HashRequest) => w.postMessage(m)

/** Whether this process has started the hashing worker (tests: small files never start it). */
export const workerStarted = (): boolean => plain.worker !== undefined

/**
 * Up to this size a file is hashed on the main thread at digest, and no worker starts: a worker's start
 * costs ~30 ms of CPU, hashing 256 KiB well under 1 ms (most layers an agent fetches are small).
 */
export const INLINE_MAX = 256 * 1024

/**
 * The first `bytes` bytes of `file`, hashed on the calling thread; fails as the worker does
 * (HashServer.ts). Small files, and the last resort of a caller whose worker cannot hash.
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
 * With `check` (a label), the worker also runs the layer check over the chunks it hashes (see `verdict`).
 */
export const hashFile = (file: string, opts: { readonly check?: string } = {}): FileHash => {
  const pool = opts.check !== undefined ? withCheck : plain
  let w: Worker | undefined
  let id = -1
  let finished = false
  let checking = false
  let verdict: WorkerReply | undefined
  /** The worker could not start: `written` does nothing, `digest` fails with this. */
  let cannot: Error | undefined
  const handOver = (bytes: number) => {
    try {
      w = pool.get()
    } catch (e) {
      cannot = e instanceof Error ? e : new Error(String(e))
      return
    }
    if (pool.active++ === 0) w.ref()
    id = nextId++
    checking = opts.check !== undefined && checked < MAX_CHECKED
    if (checking) checked++
    send(w, { id, op: "open", path: file, ...(checking ? { check: opts.check! } : {}) })
    send(w, { id, op: "written", bytes })
  }
  /** This hash no longer holds the process open (the worker is unref'd once none does). */
  const release = () => pool.release()
  /** No more input; with `awaiting`, the worker stays ref'd until `release` (a digest under way). */
  const finish = (awaiting = false) => {
    if (finished) return false
    finished = true
    if (checking) checked--
    if (w !== undefined && !awaiting) release()
    return true
  }
  return {
    written: (bytes) => {
      if (finished || cannot !== undefined) return
      if (w === undefined) {
        if (bytes > INLINE_MAX) handOver(bytes)
      } else if (pool.worker === w) send(w, { id, op: "written", bytes })
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
        finish(true)
        if (cannot !== undefined) return reject(new Error(`hashing could not start: ${cannot.message}`))
        if (pool.worker !== w) {
          release()
          return reject(new Error("hashing stopped"))
        }
        pool.waiting.set(id, {
          resolve: (r) => {
            release()
            verdict = r.verdict
            resolve(r.hex)
          },
          reject: (e) => {
            release()
            reject(e)
          }
        })
        send(w!, { id, op: "digest", bytes })
      }),
    verdict: () => verdict,
    abandon: () => {
      if (finish() && w !== undefined && pool.worker === w) send(w, { id, op: "abandon" })
    }
  }
}
