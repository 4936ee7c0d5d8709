// The worker side of TreeWriter.ts: executes each batch's ops in order; the first failing op stops it
// (nothing after it is done) and is reported with its index. Runs as a module of its own (src/fs/WorkerModule.ts).
import * as fs from "node:fs"
import { parentPort, workerData } from "node:worker_threads"
import type { FileMeta, Op } from "./TreeWriter.js"

export interface Batch {
  readonly id: number
  readonly ops: ReadonlyArray<Op>
  /** Where the batch's file data lies in the shared ring, or a copy that did not fit. */
  readonly start: number
  readonly len: number
  readonly copy: Uint8Array | undefined
}
export type BatchReply =
  | { readonly id: number; readonly done: number }
  | { readonly id: number; readonly failedAt: number; readonly code: string | undefined; readonly message: string }
export interface WriterData {
  readonly ring: SharedArrayBuffer
}

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = fs.constants
const S_ISGID = 0o2000
const CREATE = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW
const DIR = O_RDONLY | O_DIRECTORY | O_NOFOLLOW
// fs takes a negative number of seconds as "now"; a Date before 1970 is set as it is.
const t = (s: number | undefined): number | Date => (s !== undefined && s < 0 ? new Date(s * 1000) : (s ?? 0))
const withDir = (path: string, f: (fd: number) => void) => {
  const fd = fs.openSync(path, DIR)
  try {
    f(fd)
  } finally {
    fs.closeSync(fd)
  }
}
const fds = new Map<number, number>()
let failed = false
const finish = (fd: number, op: FileMeta) => {
  try {
    // chown clears setuid bits, so it goes first.
    if (op.uid !== undefined) fs.fchownSync(fd, op.uid, op.gid!)
    if (op.chmod !== undefined) fs.fchmodSync(fd, op.chmod)
    if (op.mtime !== undefined) fs.futimesSync(fd, t(op.atime), t(op.mtime))
  } finally {
    fs.closeSync(fd)
  }
}
const fdOf = (slot: number) => {
  const fd = fds.get(slot)
  if (fd === undefined) throw new Error(`internal: no open file in slot ${slot}`)
  return fd
}
const run = (op: Op, data: Buffer | undefined): void => {
  switch (op.k) {
    case "mkdir":
      fs.mkdirSync(op.path, op.mode)
      return
    case "rmdir":
      return fs.rmdirSync(op.path)
    case "unlink":
      return fs.unlinkSync(op.path)
    case "open":
      return void fds.set(op.slot, fs.openSync(op.path, CREATE, op.mode))
    case "write": {
      const fd = fdOf(op.slot)
      let off = op.off
      const end = op.off + op.len
      while (off < end) off += fs.writeSync(fd, data!, off, end - off)
      return
    }
    case "close": {
      const fd = fdOf(op.slot)
      fds.delete(op.slot)
      return finish(fd, op)
    }
    case "empty":
      return finish(fs.openSync(op.path, CREATE, op.mode), op)
    case "symlink":
      fs.symlinkSync(op.target, op.path)
      if (op.uid !== undefined) fs.lchownSync(op.path, op.uid, op.gid!)
      if (op.mtime !== undefined) fs.lutimesSync(op.path, t(op.atime), t(op.mtime))
      return
    case "link":
      return fs.linkSync(op.existing, op.path)
    case "dirmeta":
      return withDir(op.path, (fd) => {
        if (op.uid !== undefined) fs.fchownSync(fd, op.uid, op.gid!)
        // The setgid bit a directory just made inherited from its parent, where GNU tar leaves it (Extractor.ts).
        fs.fchmodSync(fd, op.keepInheritedSetgid ? op.mode | (fs.fstatSync(fd).mode & S_ISGID) : op.mode)
        fs.futimesSync(fd, t(op.atime), t(op.mtime))
      })
    case "dirrwx":
      return withDir(op.path, (fd) => {
        const mode = fs.fstatSync(fd).mode & 0o7777
        if ((mode & 0o777) !== op.rwx) fs.fchmodSync(fd, (mode & ~0o777) | op.rwx)
      })
    case "touch":
      return withDir(op.path, (fd) => fs.futimesSync(fd, fs.fstatSync(fd).atimeMs / 1000, Date.now() / 1000))
  }
}

const { ring } = workerData as WriterData
const reply = (r: BatchReply) => parentPort!.postMessage(r)
parentPort!.on("message", ({ id, ops, start, len, copy }: Batch) => {
  if (failed) return
  // Write offsets are relative to the batch's data: its region of the ring (or a copy that did not fit).
  const buf = copy !== undefined ? Buffer.from(copy) : len > 0 ? Buffer.from(ring, start, len) : undefined
  for (let i = 0; i < ops.length; i++) {
    try {
      run(ops[i]!, buf)
    } catch (e) {
      failed = true
      for (const fd of fds.values()) {
        try {
          fs.closeSync(fd)
        } catch {
          // closing what we can; the first failure is what is reported
        }
      }
      fds.clear()
      const err = e as NodeJS.ErrnoException
      return reply({ id, failedAt: i, code: err?.code, message: String(err?.message ?? e) })
    }
  }
  reply({ id, done: ops.length })
})
