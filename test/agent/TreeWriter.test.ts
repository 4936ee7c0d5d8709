// The Unpacker's writer: ops run in order, a failure stops everything after it and names its entry, and
// back-pressure tells the source to wait; on its worker thread, or on the main thread for a small unpack.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { existsSync, readFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { HIGH_WATER, OpFailed, RingRegions, SMALL_UNPACK, TreeWriter } from "../../src/agent/TreeWriter.js"
import { extractLayers } from "../../src/agent/Unpacker.js"
import { writeArchive } from "./fixtures.js"

let dir: string
const writers: Array<TreeWriter> = []
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "treewriter-"))
})
afterEach(async () => {
  for (const w of writers.splice(0)) await w.close()
  await fs.rm(dir, { recursive: true, force: true })
})
const writer = (options: { readonly onThisThread?: boolean } = {}) => {
  const w = new TreeWriter(options)
  writers.push(w)
  return w
}
/** This process's threads (Linux): a worker is one more. */
const threads = () => Number(/^Threads:\s+(\d+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1])

describe("TreeWriter", () => {
  it("runs ops in order across batches: dirs, files written in pieces, links, metadata", async () => {
    const w = writer()
    w.push("d", { k: "mkdir", path: path.join(dir, "d"), mode: 0o700 })
    const a = w.slot()
    const b = w.slot()
    w.push("d/a", { k: "open", slot: a, path: path.join(dir, "d/a"), mode: 0o600 })
    w.write("d/a", a, Buffer.from("hel"))
    w.flush() // a file may span batches
    w.push("d/b", { k: "open", slot: b, path: path.join(dir, "d/b"), mode: 0o644 })
    w.write("d/a", a, Buffer.from("lo")) // and interleave with another open file
    w.write("d/b", b, Buffer.from("bee"))
    w.push("d/a", { k: "close", slot: a, atime: 1_000_000, mtime: 1_000_000 })
    w.push("d/b", { k: "close", slot: b, chmod: 0o640 })
    w.push("l", { k: "symlink", target: "d/a", path: path.join(dir, "l") })
    w.push("h", { k: "link", existing: path.join(dir, "d/a"), path: path.join(dir, "h") })
    w.push("d", { k: "dirmeta", path: path.join(dir, "d"), mode: 0o750, atime: 2_000_000, mtime: 2_000_000 })
    await w.drain()
    expect(await fs.readFile(path.join(dir, "d/a"), "utf8")).toBe("hello")
    expect(await fs.readFile(path.join(dir, "d/b"), "utf8")).toBe("bee")
    expect((await fs.stat(path.join(dir, "d/a"))).mtimeMs).toBe(1_000_000_000)
    expect((await fs.stat(path.join(dir, "d/b"))).mode & 0o777).toBe(0o640)
    expect(await fs.readlink(path.join(dir, "l"))).toBe("d/a")
    expect((await fs.stat(path.join(dir, "h"))).nlink).toBe(2)
    const d = await fs.stat(path.join(dir, "d"))
    expect(d.mode & 0o777).toBe(0o750)
    expect(d.mtimeMs).toBe(2_000_000_000)
  })

  it("never follows or overwrites what is already there (O_EXCL|O_NOFOLLOW)", async () => {
    await fs.writeFile(path.join(dir, "target"), "precious")
    await fs.symlink(path.join(dir, "target"), path.join(dir, "link"))
    const w = writer()
    const s = w.slot()
    w.push("link", { k: "open", slot: s, path: path.join(dir, "link"), mode: 0o644 })
    w.write("link", s, Buffer.from("overwritten"))
    w.push("link", { k: "close", slot: s })
    const err = await w.drain().then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(OpFailed)
    expect((err as OpFailed).code).toBe("EEXIST")
    expect(await fs.readFile(path.join(dir, "target"), "utf8")).toBe("precious")
  })

  it("sets directory metadata only on the directory itself, never through a link (O_NOFOLLOW|O_DIRECTORY)", async () => {
    const outside = path.join(dir, "outside")
    await fs.mkdir(outside, { mode: 0o700 })
    await fs.utimes(outside, 1000, 1000)
    await fs.symlink(outside, path.join(dir, "d"))
    for (const op of [
      { k: "dirmeta", path: path.join(dir, "d"), mode: 0o777, atime: 5, mtime: 5 },
      { k: "touch", path: path.join(dir, "d") }
    ] as const) {
      const w = writer()
      w.push("d", op)
      const err = await w.drain().then(() => undefined, (e: unknown) => e)
      expect((err as OpFailed).code).toMatch(/^(ELOOP|ENOTDIR)$/)
    }
    const st = await fs.stat(outside)
    expect([st.mode & 0o777, st.mtimeMs]).toEqual([0o700, 1_000_000])
  })

  it("stops at the first failure, names its entry, maps refusals, and does nothing after it", async () => {
    await fs.mkdir(path.join(dir, "full"))
    await fs.writeFile(path.join(dir, "full/x"), "x")
    const w = writer()
    w.push("before", { k: "mkdir", path: path.join(dir, "before"), mode: 0o755 })
    w.push("full", { k: "rmdir", path: path.join(dir, "full") }, { ENOTEMPTY: "cannot replace a non-empty directory" })
    w.push("after", { k: "mkdir", path: path.join(dir, "after"), mode: 0o755 })
    w.flush()
    w.push("later", { k: "mkdir", path: path.join(dir, "later"), mode: 0o755 })
    const err = (await w.drain().then(() => undefined, (e: unknown) => e)) as OpFailed
    expect(err).toBeInstanceOf(OpFailed)
    expect(err.entry).toBe("full")
    expect(err.code).toBe("ENOTEMPTY")
    expect(err.refusal).toBe("cannot replace a non-empty directory")
    expect(w.failed).toBe(err)
    expect(existsSync(path.join(dir, "before"))).toBe(true)
    expect(existsSync(path.join(dir, "after"))).toBe(false)
    expect(existsSync(path.join(dir, "later"))).toBe(false)
  })

  it("keeps every file's bytes intact while batches wrap around the shared ring, and sends an oversized batch as a copy", async () => {
    const w = writer()
    const want = new Map<string, Buffer>()
    // Uneven batches (up to 900 KiB) add up to about twice the ring, sent faster than the worker writes.
    const pool = randomBytes(900 * 1024) // made up front: the loop must outrun the worker
    for (let i = 0; i < 80; i++) {
      const name = `f${i}`
      const data = Buffer.from(pool.subarray((i * 131) % 1024, (i * 131) % 1024 + ((i * 7919) % (899 * 1024)) + 1))
      want.set(name, data)
      const s = w.slot()
      w.push(name, { k: "open", slot: s, path: path.join(dir, name), mode: 0o644 })
      w.write(name, s, data.subarray(0, data.length >> 1))
      w.write(name, s, data.subarray(data.length >> 1))
      w.push(name, { k: "close", slot: s })
      w.flush() // never waiting for room: the ring fills up, and batches that do not fit go as copies
    }
    const big = randomBytes(3 * 1024 * 1024 + 17)
    want.set("big", big)
    const s = w.slot()
    w.push("big", { k: "open", slot: s, path: path.join(dir, "big"), mode: 0o644 })
    w.write("big", s, big)
    w.push("big", { k: "close", slot: s })
    await w.drain()
    for (const [name, data] of want) expect((await fs.readFile(path.join(dir, name))).equals(data), name).toBe(true)
  })

  it("asks the source to wait while much data is in flight, and lets it go on once written", async () => {
    const w = writer()
    const s = w.slot()
    w.push("big", { k: "open", slot: s, path: path.join(dir, "big"), mode: 0o644 })
    const chunk = Buffer.alloc(1024 * 1024, 7)
    let full = false
    for (let i = 0; i < 40 && !full; i++) {
      w.write("big", s, chunk)
      w.flush()
      full = w.full()
    }
    expect(full).toBe(true)
    await new Promise<void>((resolve) => w.whenRoom(resolve))
    expect(w.full()).toBe(false)
    w.push("big", { k: "close", slot: s })
    await w.drain()
    expect((await fs.stat(path.join(dir, "big"))).size % chunk.length).toBe(0)
    expect((await fs.stat(path.join(dir, "big"))).size).toBeGreaterThan(HIGH_WATER)
  })
})

describe("RingRegions", () => {
  it("places regions that never overlap one in use, wrapping around, and refuses what does not fit", () => {
    const size = 100
    const ring = new RingRegions(size, 40)
    const inUse: Array<[number, number]> = []
    let seed = 7
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n)
    let placed = 0
    let refused = 0
    let wrapped = 0
    for (let step = 0; step < 5000; step++) {
      if (inUse.length > 0 && rand(3) === 0) {
        ring.releaseOldest()
        inUse.shift()
        continue
      }
      const n = 1 + rand(45)
      const start = ring.place(n)
      if (start === undefined) {
        refused++
        // Refused only when too large, or when no gap of n bytes exists in the allowed places.
        if (n <= 40) {
          const last = inUse.at(-1)
          const first = inUse[0]
          expect(first).toBeDefined()
          const tailRoom = last![1] > first![0] ? Math.max(size - last![1], first![0]) : first![0] - last![1]
          expect(tailRoom).toBeLessThan(n)
        }
        continue
      }
      placed++
      if (inUse.length > 0 && start < inUse.at(-1)![1]) wrapped++
      expect(start + n).toBeLessThanOrEqual(size)
      for (const [a, b] of inUse) expect(start + n <= a || start >= b, `[${start}, ${start + n}) overlaps [${a}, ${b})`).toBe(true)
      inUse.push([start, start + n])
    }
    expect(placed).toBeGreaterThan(1000)
    expect(refused).toBeGreaterThan(100)
    expect(wrapped).toBeGreaterThan(100)
    expect(ring.place(41)).toBeUndefined()
    expect(ring.place(0)).toBeUndefined()
  })
})

// On the main thread (a small unpack starts no worker): the same ops, order and failures as on the worker.
describe("TreeWriter on the main thread", () => {
  it("runs each batch as it is flushed, on no other thread; a file may span batches", async () => {
    const before = threads()
    const w = writer({ onThisThread: true })
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
    const w = writer({ onThisThread: true })
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
    const w = writer({ onThisThread: true })
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
