// Runs TreeWriter's ops (TreeWriter.ts): on its worker thread, or on the main thread for a small unpack.
// The first failing op stops the runner: nothing after it is done, and every file it holds open is closed.
import * as fs from "node:fs"
import type { FileMeta, Op } from "./TreeWriter.js"

/** A batch's outcome: every op done, or the index of the one that failed (and why). */
export type RunResult =
  | { readonly done: number }
  | { readonly failedAt: number; readonly code: string | undefined; readonly message: string }

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

export class TreeOps {
  /** The files open between their open and close ops, by slot. */
  readonly fds = new Map<number, number>()
  private failed = false

  /** Whether an op failed: the runner does nothing more. */
  get stopped(): boolean {
    return this.failed
  }

  /** Runs `ops` in order, file data at their offsets in `data`; after a failure, runs nothing more. */
  runBatch(ops: ReadonlyArray<Op>, data: Buffer | undefined): RunResult {
    if (this.failed) return { failedAt: 0, code: undefined, message: "the file writer stopped" }
    for (let i = 0; i < ops.length; i++) {
      try {
        this.run(ops[i]!, data)
      } catch (e) {
        this.failed = true
        this.closeAll()
        const err = e as NodeJS.ErrnoException
        return { failedAt: i, code: err?.code, message: String(err?.message ?? e) }
      }
    }
    return { done: ops.length }
  }

  /** Closes the files still open (what can be closed: the first failure is what is reported). */
  closeAll(): void {
    for (const fd of this.fds.values()) {
      try {
        fs.closeSync(fd)
      } catch {
        // closing what we can
      }
    }
    this.fds.clear()
  }

  private fdOf(slot: number): number {
    const fd = this.fds.get(slot)
    if (fd === undefined) throw new Error(`internal: no open file in slot ${slot}`)
    return fd
  }

  private run(op: Op, data: Buffer | undefined): void {
    switch (op.k) {
      case "mkdir":
        fs.mkdirSync(op.path, op.mode)
        return
      case "rmdir":
        return fs.rmdirSync(op.path)
      case "unlink":
        return fs.unlinkSync(op.path)
      case "open":
        return void this.fds.set(op.slot, fs.openSync(op.path, CREATE, op.mode))
      case "write": {
        const fd = this.fdOf(op.slot)
        let off = op.off
        const end = op.off + op.len
        while (off < end) off += fs.writeSync(fd, data!, off, end - off)
        return
      }
      case "close": {
        const fd = this.fdOf(op.slot)
        this.fds.delete(op.slot)
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
}
