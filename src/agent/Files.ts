// Small file-system helpers the agent's services share: durable renames, leftovers of a killed
// process, and finishing a short vectored write.
import * as fs from "node:fs/promises"
import * as path from "node:path"

/** fsync of a directory, so a rename inside it survives a crash. */
export const fsyncDir = async (dir: string): Promise<void> => {
  const fh = await fs.open(dir, "r")
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Removes the entries of `dir` that `isLeftover` picks (temp files of a killed agent); never fails. */
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
