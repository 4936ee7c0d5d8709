// Layer archives (.tar.gz) from an in-memory tree, and the expected-tree manifest the deploy script checks.
import { createHash } from "node:crypto"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as tar from "tar"

export type Tree = ReadonlyMap<string, Buffer>

/** Writes `tree` into a .tar.gz at `out` (regular files only, parents implied). */
export const makeTarGz = async (tree: Tree, out: string, level = 1): Promise<Buffer> => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "rel-tree-"))
  try {
    for (const [rel, bytes] of tree) {
      mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
      writeFileSync(path.join(dir, rel), bytes)
    }
    const top = [...new Set([...tree.keys()].map((k) => k.split("/")[0]!))].sort()
    await tar.c({ gzip: { level }, file: out, cwd: dir, portable: true }, top)
    return readFileSync(out)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Later layers overwrite earlier files. */
export const merge = (layers: ReadonlyArray<Tree>): Map<string, Buffer> => {
  const out = new Map<string, Buffer>()
  for (const l of layers) for (const [k, v] of l) out.set(k, v)
  return out
}

/** `sha256  path` lines, sorted (sha256sum format). */
export const manifest = (tree: Tree): string =>
  [...tree.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([p, b]) => `${createHash("sha256").update(b).digest("hex")}  ${p}\n`)
    .join("")
