// TreeWriter on the main thread (a small unpack starts no worker): the same ops, the same order, the same
// failures as on its worker (TreeWriter.test.ts).
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { OpFailed, SMALL_UNPACK, TreeWriter } from "../../src/agent/TreeWriter.js"
import { extractLayers } from "../../src/agent/Unpacker.js"
import { writeArchive } from "./fixtures.js"

let dir: string
const writers: Array<TreeWriter> = []
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "treewriter-here-"))
})
afterEach(async () => {
  for (const w of writers.splice(0)) await w.close()
  await fs.rm(dir, { recursive: true, force: true })
})
/** This process's threads (Linux): a worker is one more. */
const threads = () => Number(/^Threads:\s+(\d+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1])
const writer = () => {
  const w = new TreeWriter({ onThisThread: true })
  writers.push(w)
  return w
}

describe("TreeWriter on the main thread", () => {
  it("runs each batch as it is flushed, on no other thread; a file may span batches", async () => {
    const before = threads()
    const w = writer()
    const f = w.slot()
    w.push("d", { k: "mkdir", path: path.join(dir, "d"), mode: 0o700 })
    w.push("d/f", { k: "open", slot: f, path: path.join(dir, "d/f"), mode: 0o600 })
    w.write("d/f", f, Buffer.from("hel"))
    w.flush()
    // Done by the flush itself: nothing in flight.
    expect((await fs.stat(path.join(dir, "d/f"))).size).toBe(3)
    expect(w.full()).toBe(false)
    w.write("d/f", f, Buffer.from("lo"))
    w.push("d/f", { k: "close", slot: f, chmod: 0o640, atime: 1_000_000, mtime: 1_000_000 })
    w.push("s", { k: "symlink", target: "d/f", path: path.join(dir, "s") })
    await w.drain()
    const st = await fs.stat(path.join(dir, "d/f"))
    expect([await fs.readFile(path.join(dir, "d/f"), "utf8"), st.mode & 0o777, st.mtimeMs]).toEqual(["hello", 0o640, 1_000_000_000])
    expect(await fs.readlink(path.join(dir, "s"))).toBe("d/f")
    expect(threads()).toBe(before)
  })

  it("never follows or overwrites what is already there (O_EXCL|O_NOFOLLOW)", async () => {
    await fs.writeFile(path.join(dir, "target"), "precious")
    await fs.symlink(path.join(dir, "target"), path.join(dir, "link"))
    const w = writer()
    const s = w.slot()
    w.push("link", { k: "open", slot: s, path: path.join(dir, "link"), mode: 0o644 })
    w.write("link", s, Buffer.from("overwritten"))
    w.push("link", { k: "close", slot: s })
    await expect(w.drain()).rejects.toMatchObject({ entry: "link", code: "EEXIST" })
    expect(await fs.readFile(path.join(dir, "target"), "utf8")).toBe("precious")
  })

  it("stops at the first failure, names its entry, maps refusals, and does nothing after it", async () => {
    await fs.mkdir(path.join(dir, "full"))
    await fs.writeFile(path.join(dir, "full", "x"), "")
    const w = writer()
    w.push("ok", { k: "mkdir", path: path.join(dir, "ok"), mode: 0o755 })
    w.push("full", { k: "rmdir", path: path.join(dir, "full") }, { ENOTEMPTY: "replaces a non-empty directory" })
    w.push("after", { k: "mkdir", path: path.join(dir, "after"), mode: 0o755 })
    const err = await w.drain().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(OpFailed)
    expect((err as OpFailed).entry).toBe("full")
    expect((err as OpFailed).refusal).toBe("replaces a non-empty directory")
    w.push("later", { k: "mkdir", path: path.join(dir, "later"), mode: 0o755 })
    await expect(w.drain()).rejects.toBe(err)
    expect((await fs.readdir(dir)).sort()).toEqual(["full", "ok"])
  })
})

describe("extractLayers", () => {
  const opts = { keepSuid: false, log: () => {} }
  it("unpacks small layers on this thread, larger ones on the worker", async () => {
    const small = (await writeArchive(dir, "small.tgz", [{ path: "a/f", content: "small" }])).file
    // Random bytes do not compress: past SMALL_UNPACK on disk.
    const big = (await writeArchive(dir, "big.tgz", [{ path: "g", content: randomBytes(SMALL_UNPACK + 4096) }])).file
    const threadsDuring = async (file: string, tree: string) => {
      await fs.mkdir(tree)
      let most = 0
      const timer = setInterval(() => (most = Math.max(most, threads())), 1)
      await extractLayers(tree, [{ label: "l", file }], opts)
      clearInterval(timer)
      return Math.max(most, threads())
    }
    const before = threads()
    expect(await threadsDuring(small, path.join(dir, "t1"))).toBe(before)
    expect(await fs.readFile(path.join(dir, "t1", "a/f"), "utf8")).toBe("small")
    expect(await threadsDuring(big, path.join(dir, "t2"))).toBeGreaterThan(before)
    expect((await fs.stat(path.join(dir, "t2", "g"))).size).toBe(SMALL_UNPACK + 4096)
  })
})
