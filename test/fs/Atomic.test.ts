import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { removeLeftovers, unwritten, writeFileAtomic, writeFileSynced } from "../../src/fs/Atomic.js"

const b = (s: string) => Buffer.from(s)

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "atomic-"))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const modeOf = async (p: string) => (await stat(p)).mode & 0o777
/** What `open(…, mode)` gives under this process's umask. */
const masked = (mode: number) => mode & ~process.umask()

describe("writeFileAtomic", () => {
  it("creates the target with exactly the data and the mode, leaving no temp file", async () => {
    const target = path.join(dir, "state.json")
    const data = Buffer.from([0, 1, 2, 255, 10, 13])
    await expect(writeFileAtomic(target, data, { mode: 0o600 })).resolves.toBe(true)
    expect(await readFile(target)).toEqual(data)
    expect(await modeOf(target)).toBe(masked(0o600))
    await writeFileAtomic(path.join(dir, "pub"), "text\n", { mode: 0o644 })
    expect(await readFile(path.join(dir, "pub"), "utf8")).toBe("text\n")
    expect(await modeOf(path.join(dir, "pub"))).toBe(masked(0o644))
    expect((await readdir(dir)).sort()).toEqual(["pub", "state.json"])
  })

  it("replaces an existing target, mode included", async () => {
    const target = path.join(dir, "previous")
    await writeFile(target, "old content that is longer than the new one", { mode: 0o600 })
    await expect(writeFileAtomic(target, "new", { mode: 0o644, tmpSuffix: ".part" })).resolves.toBe(true)
    expect(await readFile(target, "utf8")).toBe("new")
    expect(await modeOf(target)).toBe(masked(0o644))
    expect(await readdir(dir)).toEqual(["previous"])
  })

  it("with keepExisting, never replaces a target that exists", async () => {
    const target = path.join(dir, "host_key")
    await writeFile(target, "theirs")
    await expect(writeFileAtomic(target, "ours", { mode: 0o600, keepExisting: true })).resolves.toBe(false)
    expect(await readFile(target, "utf8")).toBe("theirs")
    expect(await readdir(dir)).toEqual(["host_key"])
    const fresh = path.join(dir, "new_key")
    await expect(writeFileAtomic(fresh, "ours", { mode: 0o600, keepExisting: true })).resolves.toBe(true)
    expect(await readFile(fresh, "utf8")).toBe("ours")
    expect(await modeOf(fresh)).toBe(masked(0o600))
    expect((await readdir(dir)).sort()).toEqual(["host_key", "new_key"])
  })

  it("fails when the directory is missing, creating nothing", async () => {
    const target = path.join(dir, "missing", "state.json")
    await expect(writeFileAtomic(target, "x", { mode: 0o644 })).rejects.toMatchObject({ code: "ENOENT" })
    expect(await readdir(dir)).toEqual([])
  })

  it("fails on a rename onto a directory, removing its temp file and leaving the target as it was", async () => {
    const target = path.join(dir, "state.json")
    await mkdir(target)
    await writeFile(path.join(target, "inside"), "kept")
    await expect(writeFileAtomic(target, "x", { mode: 0o644 })).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/) })
    expect(await readdir(dir)).toEqual(["state.json"])
    expect(await readdir(target)).toEqual(["inside"])
    expect(await readFile(path.join(target, "inside"), "utf8")).toBe("kept")
  })
})

describe("writeFileSynced", () => {
  it("creates a new file with the data and mode, and refuses an existing one", async () => {
    const file = path.join(dir, "statefile-1.json")
    await writeFileSynced(file, "{}", 0o644)
    expect(await readFile(file, "utf8")).toBe("{}")
    expect(await modeOf(file)).toBe(masked(0o644))
    await expect(writeFileSynced(file, "other", 0o644)).rejects.toMatchObject({ code: "EEXIST" })
    expect(await readFile(file, "utf8")).toBe("{}")
  })
})

describe("unwritten", () => {
  it("gives what a short vectored write left, from the exact byte it stopped at", () => {
    const bufs = [b("abc"), b("defg"), b("hi")]
    expect(unwritten(bufs, 0).map(String)).toEqual(["abc", "defg", "hi"])
    expect(unwritten(bufs, 3).map(String)).toEqual(["defg", "hi"])
    expect(unwritten(bufs, 5).map(String)).toEqual(["fg", "hi"])
    expect(unwritten(bufs, 8).map(String)).toEqual(["i"])
    expect(unwritten(bufs, 9)).toEqual([])
  })
})

describe("removeLeftovers", () => {
  it("removes only the picked entries, and is quiet when the directory is missing", async () => {
    await writeFile(path.join(dir, "a.part"), "x")
    await writeFile(path.join(dir, "keep"), "y")
    await removeLeftovers(dir, (n) => n.endsWith(".part"))
    expect(await readdir(dir)).toEqual(["keep"])
    await expect(removeLeftovers(path.join(dir, "missing"), () => true)).resolves.toBeUndefined()
  })
})
