// sha256 of a file being written (an agent's download, an upload to the registry), on a worker thread
// beside the main thread that decrypts and writes it: hashing was a quarter of the agent's CPU per
// downloaded byte (bench/profile.ts -mode agent-deploy), all of it in series with the SSH path. The worker
// reads back what has been written (from the page cache), so no buffer is shared or copied between
// threads: sharing the read buffers made every copy into them several times slower. One worker serves
// every hash of the process, and does not keep the process alive while no hash is running.
import { Worker } from "node:worker_threads"

export interface FileHash {
  /** The first `bytes` bytes of the file are written: hash them (in the background). */
  readonly written: (bytes: number) => void
  /** The sha256 (lowercase hex) of the first `bytes` bytes; the hash is finished after this. */
  readonly digest: (bytes: number) => Promise<string>
  /** Ends it without a result (a failed download). */
  readonly abandon: () => void
}

// CommonJS run with `eval: true`, so it works the same from dist/ and from the sources under test.
const workerSource = `
const { parentPort } = require("node:worker_threads")
const { createHash } = require("node:crypto")
const fs = require("node:fs")
const streams = new Map()
const close = (s) => { try { fs.closeSync(s.fd) } catch {} }
const catchUp = (s, upTo) => {
  while (s.pos < upTo) {
    const n = fs.readSync(s.fd, s.buf, 0, Math.min(s.buf.length, upTo - s.pos), s.pos)
    if (n === 0) throw new Error("the file ended at " + s.pos + ", expected " + upTo + " bytes")
    s.h.update(s.buf.subarray(0, n))
    s.pos += n
  }
}
parentPort.on("message", ({ id, op, path, bytes }) => {
  let s = streams.get(id)
  try {
    if (op === "open") {
      s = { fd: -1, h: createHash("sha256"), pos: 0, buf: Buffer.allocUnsafe(1 << 20), error: undefined }
      streams.set(id, s)
      s.fd = fs.openSync(path, "r")
    } else if (op === "written") {
      if (s && s.error === undefined) catchUp(s, bytes)
    } else if (op === "digest") {
      streams.delete(id)
      if (s.error !== undefined) throw s.error
      catchUp(s, bytes)
      close(s)
      parentPort.postMessage({ id, hex: s.h.digest("hex") })
    } else {
      streams.delete(id)
      if (s) close(s)
    }
  } catch (e) {
    if (op === "digest") {
      if (s) close(s)
      parentPort.postMessage({ id, error: String((e && e.message) || e) })
    } else if (s) s.error = e
  }
})
`

let worker: Worker | undefined
let active = 0
let nextId = 0
const waiting = new Map<number, { resolve: (hex: string) => void; reject: (e: Error) => void }>()

const failAll = (e: Error) => {
  for (const w of waiting.values()) w.reject(e)
  waiting.clear()
  worker = undefined
}

const getWorker = (): Worker => {
  if (worker !== undefined) return worker
  const w = new Worker(workerSource, { eval: true })
  w.on("message", (r: { id: number; hex?: string; error?: string }) => {
    const p = waiting.get(r.id)
    waiting.delete(r.id)
    if (p === undefined) return
    if (r.hex !== undefined) p.resolve(r.hex)
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
  w.postMessage({ id, op: "open", path: file })
  return {
    written: (bytes) => {
      if (!finished && worker === w) w.postMessage({ id, op: "written", bytes })
    },
    digest: (bytes) =>
      new Promise<string>((resolve, reject) => {
        if (!finish()) return reject(new Error("hash already finished"))
        if (worker !== w) return reject(new Error("hashing stopped"))
        waiting.set(id, { resolve, reject })
        w.postMessage({ id, op: "digest", bytes })
      }),
    abandon: () => {
      if (finish() && worker === w) w.postMessage({ id, op: "abandon" })
    }
  }
}
