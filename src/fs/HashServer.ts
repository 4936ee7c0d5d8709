// The worker side of FileHasher.ts: one sha256 per open file, fed by reading back what the main thread
// reports as written, and for a file asked to be checked, a check of the same chunks (the layer check,
// LayerCheckStream.ts, in CheckedHasher.worker.ts). Two worker modules serve it: FileHasher.worker.ts
// hashes only and stays small (every large download starts it: the layer reader's modules cost ~30 ms
// of CPU more per start), CheckedHasher.worker.ts also checks (the registry's uploads).
import { createHash, type Hash } from "node:crypto"
import * as fs from "node:fs"
import type { MessagePort } from "node:worker_threads"
import type { WorkerReply } from "../archive/LayerCheck.js"

/** A check fed the chunks hashed (LayerCheckStream's shape). */
export interface StreamCheck {
  readonly write: (chunk: Buffer) => void
  readonly end: () => WorkerReply
  readonly close: () => void
}

export type HashRequest =
  | { readonly id: number; readonly op: "open"; readonly path: string; readonly check?: string }
  | { readonly id: number; readonly op: "written" | "digest"; readonly bytes: number }
  | { readonly id: number; readonly op: "abandon" }

export type HashReply = { readonly id: number; readonly hex: string; readonly verdict?: WorkerReply } | { readonly id: number; readonly error: string }

interface Open {
  fd: number
  readonly h: Hash
  pos: number
  readonly buf: Buffer
  error: unknown
  /** The check of the bytes hashed, when asked for. */
  readonly check: StreamCheck | undefined
}

const close = (s: Open) => {
  s.check?.close()
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
    const chunk = s.buf.subarray(0, n)
    s.h.update(chunk)
    s.check?.write(chunk)
    s.pos += n
  }
}

/** Answers `port`'s HashRequests; `startCheck` makes the check an `open` with `check` asks for (none: no check). */
export const serveHashes = (port: Pick<MessagePort, "on" | "postMessage">, startCheck: (label: string) => StreamCheck | undefined = () => undefined): void => {
  const streams = new Map<number, Open>()
  const reply = (r: HashReply) => port.postMessage(r)
  port.on("message", (m: HashRequest) => {
    let s = streams.get(m.id)
    try {
      switch (m.op) {
        case "open":
          s = { fd: -1, h: createHash("sha256"), pos: 0, buf: Buffer.allocUnsafe(1 << 20), error: undefined, check: m.check === undefined ? undefined : startCheck(m.check) }
          streams.set(m.id, s)
          s.fd = fs.openSync(m.path, "r")
          return
        case "written":
          if (s && s.error === undefined) catchUp(s, m.bytes)
          return
        case "digest": {
          streams.delete(m.id)
          if (s === undefined) throw new Error("no such hash")
          if (s.error !== undefined) throw s.error
          catchUp(s, m.bytes)
          const verdict = s.check?.end()
          close(s)
          return reply({ id: m.id, hex: s.h.digest("hex"), ...(verdict ? { verdict } : {}) })
        }
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
}
