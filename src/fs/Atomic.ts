// Durable file writes, shared by the registry and the agent. A crash (SIGKILL, power loss) must leave a
// file's old content or its new one, never a mix: the new content goes to a temp file in the same
// directory (rename is atomic only within one filesystem), is fsync'd, renamed over the target, and the
// directory is fsync'd (the rename lives in the directory's data). Promises reject with Node's error;
// callers map it to their own typed error.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"

const fsync = async (p: string, flags: "r" | "r+") => {
  const fh = await fs.open(p, flags)
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** fsync of a file's data (before renaming it into place). */
export const fsyncFile = (file: string): Promise<void> => fsync(file, "r+")

/** fsync of a directory, so a rename or removal inside it survives a crash. */
export const fsyncDir = (dir: string): Promise<void> => fsync(dir, "r")

/** Creates `file` ("wx": never an existing one) holding `data`, fsync'd. `mode` is subject to the umask. */
export const writeFileSynced = async (file: string, data: string | Uint8Array, mode: number): Promise<void> => {
  const fh = await fs.open(file, "wx", mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export interface AtomicOptions {
  /** Of the new file, subject to the umask (as with `open`). */
  readonly mode: number
  /**
   * Ending of the temp name `.<target name>.<12 hex><suffix>` (default ".tmp"). Cleaners of leftovers
   * match on it: the agent removes `.part` files from its cache at start.
   */
  readonly tmpSuffix?: ".tmp" | ".part"
  /** Never replace an existing target (link instead of rename): resolves false, target untouched, if one exists. */
  readonly keepExisting?: boolean
}

/**
 * Writes `data` as `target` atomically and durably; resolves true once it is in place. On failure the
 * temp file is removed and the target is as it was.
 */
export const writeFileAtomic = async (target: string, data: string | Uint8Array, o: AtomicOptions): Promise<boolean> => {
  const dir = path.dirname(target)
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString("hex")}${o.tmpSuffix ?? ".tmp"}`)
  let placed = true
  try {
    await writeFileSynced(tmp, data, o.mode)
    if (!o.keepExisting) await fs.rename(tmp, target)
    else {
      try {
        await fs.link(tmp, target)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
        placed = false // someone else's file won the race: it stays
      }
    }
  } finally {
    // Gone after a rename; left after a link or a failure.
    await fs.rm(tmp, { force: true }).catch(() => undefined)
  }
  if (placed) await fsyncDir(dir)
  return placed
}

/** Removes the entries of `dir` that `isLeftover` picks (temp files of a killed process); never fails. */
export const removeLeftovers = (dir: string, isLeftover: (name: string) => boolean): Promise<void> =>
  fs
    .readdir(dir)
    .then((names) => Promise.all(names.filter(isLeftover).map((n) => fs.rm(path.join(dir, n), { force: true }))))
    .then(
      () => undefined,
      () => undefined
    )

/** What is still to be written of `bufs` after a (vectored) write that wrote only `written` bytes. */
export const unwritten = (bufs: ReadonlyArray<Uint8Array>, written: number): Array<Uint8Array> => {
  const rest: Array<Uint8Array> = []
  for (const b of bufs) {
    if (written >= b.byteLength) written -= b.byteLength
    else {
      rest.push(written > 0 ? b.subarray(written) : b)
      written = 0
    }
  }
  return rest
}
