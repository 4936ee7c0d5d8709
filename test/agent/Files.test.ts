import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { removeLeftovers, unwritten } from "../../src/agent/Files.js"

const b = (s: string) => Buffer.from(s)

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
    const dir = await mkdtemp(path.join(os.tmpdir(), "files-"))
    try {
      await writeFile(path.join(dir, "a.part"), "x")
      await writeFile(path.join(dir, "keep"), "y")
      await removeLeftovers(dir, (n) => n.endsWith(".part"))
      expect(await readdir(dir)).toEqual(["keep"])
      await expect(removeLeftovers(path.join(dir, "missing"), () => true)).resolves.toBeUndefined()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
