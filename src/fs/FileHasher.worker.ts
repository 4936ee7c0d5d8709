// The worker side of FileHasher.ts: one sha256 per open file, fed by reading back what the main thread
// reports as written. Runs as a module of its own (see WorkerModule.ts).
import { createHash, type Hash } from "node:crypto"
import * as fs from "node:fs"
import { parentPort } from "node:worker_threads"

export type HashRequest =
  | { readonly id: number; readonly op: "open"; readonly path: string }
  | { readonly id: number; readonly op: "written" | "digest"; readonly bytes: number }
  | { readonly id: number; readonly op: "abandon" }

export type HashReply = { readonly id: number; readonly hex: string } | { readonly id: number; readonly error: string }

interface Open {
  fd: number
  readonly h: Hash
  pos: number
  readonly buf: Buffer
  error: unknown
}

const streams = new Map<number, Open>()
const close = (s: Open) => {
  try {
    fs.closeSync(s.fd)
  } catch {
    // already closed, or never opened
  }
}
const catchUp = (s: Open, upTo: number) => {
  while (s.pos < upTo) {
    const n = fs.readSync(s.fd, s.buf, 0, Math.min(s.buf.length, upTo - s.pos), s.pos)
    if (n === 0) throw new Error(`the file ended at ${s.pos}, expected ${upTo} bytes`)
    s.h.update(s.buf.subarray(0, n))
    s.pos += n
  }
}
const reply = (r: HashReply) => parentPort!.postMessage(r)

parentPort!.on("message", (m: HashRequest) => {
  let s = streams.get(m.id)
  try {
    switch (m.op) {
      case "open":
        s = { fd: -1, h: createHash("sha256"), pos: 0, buf: Buffer.allocUnsafe(1 << 20), error: undefined }
        streams.set(m.id, s)
        s.fd = fs.openSync(m.path, "r")
        return
      case "written":
        if (s && s.error === undefined) catchUp(s, m.bytes)
        return
      case "digest":
        streams.delete(m.id)
        if (s === undefined) throw new Error("no such hash")
        if (s.error !== undefined) throw s.error
        catchUp(s, m.bytes)
        close(s)
        return reply({ id: m.id, hex: s.h.digest("hex") })
      case "abandon":
        streams.delete(m.id)
        if (s) close(s)
        return
    }
  } catch (e) {
    if (m.op === "digest") {
      if (s) close(s)
      reply({ id: m.id, error: e instanceof Error ? e.message : String(e) })
    } else if (s) s.error = e
  }
})
