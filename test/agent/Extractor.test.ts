// The classes of issues 12 and 24 the unpacker had, one case each (the fuzz tests look for siblings):
// metadata applied through a replaced path, unbounded work on deep names, a layer crashing the process,
// and valid layers that failed to deploy or deployed something other than GNU tar's tree.
import { Effect, Exit } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { gzipSync } from "node:zlib"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { UnpackError, UnsafeArchive } from "../../src/domain/AgentErrors.js"
import { extractLayers, type LayerFile, makeUnpacker } from "../../src/agent/Unpacker.js"
import { type EntrySpec, snapshot, tarBytes, tarGz } from "./fixtures.js"

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
const started = Math.floor(Date.now() / 1000)
const view = { owners: isRoot, now: started }

let sandbox: string
let logs: Array<string>
const opts = { keepSuid: true, log: (level: string, m: string) => void logs.push(`${level} ${m}`) }

beforeEach(async () => {
  sandbox = await fs.mkdtemp(path.join(os.tmpdir(), "extractor-"))
  logs = []
})
afterEach(async () => {
  await fs.rm(sandbox, { recursive: true, force: true })
})

let n = 0
const layer = async (bytes: Buffer): Promise<LayerFile> => {
  const file = path.join(sandbox, `layer${n++}`)
  await fs.writeFile(file, bytes)
  return { label: `l${n}@v1`, file }
}

/** Extracts into a fresh sandbox/tree; returns the error, if any, and asserts nothing outside the tree changed. */
const extract = async (...layers: ReadonlyArray<LayerFile>): Promise<unknown> => {
  const tree = path.join(sandbox, "tree")
  await fs.rm(tree, { recursive: true, force: true })
  await fs.mkdir(tree)
  const outside = async () => Object.entries(await snapshot(sandbox)).filter(([p]) => p !== "tree" && !p.startsWith("tree/"))
  const before = await outside()
  const err = await extractLayers(tree, layers, opts).then(() => undefined, (e: unknown) => e)
  expect(await outside()).toEqual(before)
  return err
}

const gz = async (...layers: ReadonlyArray<ReadonlyArray<EntrySpec>>) => Promise.all(layers.map((l) => layer(tarGz(l))))

describe("metadata is never applied through a link (issue 12, critical)", () => {
  it("a directory replaced by a symlink to an outside file in the same layer leaves the file alone", async () => {
    const victim = path.join(sandbox, "victim")
    await fs.writeFile(victim, "secret", { mode: 0o600 })
    await fs.utimes(victim, 1000, 1000)
    for (const target of [victim, sandbox]) {
      const err = await extract(
        ...(await gz([
          { path: "d/", type: "dir", mode: 0o777, uid: 4242, gid: 4242, mtime: 1_600_000_000 },
          { path: "d", type: "symlink", linkpath: target }
        ]))
      )
      expect(err).toBeUndefined()
      expect(await fs.readlink(path.join(sandbox, "tree/d"))).toBe(target)
    }
    const st = await fs.stat(victim)
    expect([st.mode & 0o7777, st.uid, st.mtimeMs]).toEqual([0o600, 0, 1_000_000])
  })
})

describe("bounded work on hostile names (issue 12)", () => {
  it("refuses a 48,000-deep name at once, with a short message", async () => {
    const deep = "a/".repeat(48_000) + "f"
    const err = await extract(await layer(tarGz([{ path: deep, content: "" }])))
    expect(err).toBeInstanceOf(UnsafeArchive)
    expect((err as UnsafeArchive).reason).toBe("path is longer than 4096 bytes")
    expect((err as UnsafeArchive).message.length).toBeLessThan(300)
    const err2 = await extract(await layer(tarGz([{ path: "a/".repeat(1500) + "f", content: "" }])))
    expect((err2 as UnsafeArchive).reason).toBe("path has more than 1024 components")
  })
})

describe("no layer crashes the agent (issue 24)", () => {
  it("refuses zstd, zstd inside gzip, gzip inside gzip and plain tar as a failure of the cycle", async () => {
    const tar = tarBytes([{ path: "f", content: "x" }])
    const zstdMagic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0, 0, 0, 0])
    const u = makeUnpacker(sandbox, opts)
    for (const [i, bytes] of [zstdMagic, gzipSync(Buffer.concat([zstdMagic, tar])), gzipSync(gzipSync(tar)), tar].entries()) {
      const exit = await Effect.runPromiseExit(u.prepare(String(i).repeat(64), [await layer(bytes)]))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(exit.cause._tag).toBe("Fail")
      expect(await fs.readdir(path.join(sandbox, "unpacked"))).toEqual([])
    }
  })

  it("turns truncated and corrupt layers into a typed failure", async () => {
    const good = tarGz([{ path: "f", content: "x".repeat(5000) }])
    for (const bytes of [good.subarray(0, good.length - 20), Buffer.concat([good.subarray(0, 30), Buffer.alloc(40, 0xff), good.subarray(70)])]) {
      const err = await extract(await layer(bytes))
      expect(err instanceof UnsafeArchive || err instanceof UnpackError, String(err)).toBe(true)
    }
  })
})

describe("valid layers deploy as GNU tar extracts them (issue 24)", () => {
  /** GNU tar's tree of the same layers, extracted into sandbox/ref. */
  const gnu = async (...layers: ReadonlyArray<LayerFile>) => {
    const ref = path.join(sandbox, "ref")
    await fs.rm(ref, { recursive: true, force: true })
    await fs.mkdir(ref)
    for (const l of layers) await run("tar", ["-C", ref, "--numeric-owner", "-xzf", l.file])
    return snapshot(ref, view)
  }
  const same = async (...layers: ReadonlyArray<ReadonlyArray<EntrySpec>>) => {
    const files = await gz(...layers)
    expect(await extract(...files)).toBeUndefined()
    expect(await snapshot(path.join(sandbox, "tree"), view)).toEqual(await gnu(...files))
  }

  it("a file replaced by a symlink, in a later layer and in the same one", async () => {
    await same([{ path: "f", content: "x" }], [{ path: "f", type: "symlink", linkpath: "g" }])
    await same([{ path: "f", content: "x" }, { path: "f", type: "symlink", linkpath: "g" }])
    await same([{ path: "f", content: "x" }, { path: "f", type: "symlink", linkpath: "/etc/passwd" }])
  })

  it("a directory replaced by a dangling symlink", async () => {
    await same([{ path: "d/", type: "dir" }], [{ path: "d", type: "symlink", linkpath: "nowhere" }])
    await same([{ path: "d/", type: "dir", mode: 0o700 }, { path: "d", type: "symlink", linkpath: "nowhere" }])
  })

  it("a directory followed by a file at the same path keeps the file's mode and mtime", async () => {
    await same([
      { path: "d/", type: "dir", mode: 0o700, mtime: 1_500_000_000 },
      { path: "d", content: "file", mode: 0o644, mtime: 1_600_000_000 }
    ])
  })

  it("mtimes before 1970 are set", async () => {
    await same([{ path: "old", content: "x", mtime: -100_000 }, { path: "oldd/", type: "dir", mtime: -5 }])
  })

  it("directory mtimes: set when extraction leaves the directory, as GNU tar does", async () => {
    await same([
      { path: "sub/", type: "dir", mtime: 1_500_000_000 },
      { path: "d", type: "symlink", linkpath: "sub" },
      { path: "d/x", content: "x" },
      { path: "e/", type: "dir", mtime: 1_500_000_000 },
      { path: "e/abs", type: "symlink", linkpath: "/nowhere" },
      { path: "z", content: "z" }
    ])
  })

  it("owners, as root", async () => {
    if (!isRoot) return
    await same([
      { path: "d/", type: "dir", uid: 4242, gid: 4343 },
      { path: "d/f", content: "x", uid: 1, gid: 2 },
      { path: "d/l", type: "symlink", linkpath: "f", uid: 3, gid: 4 }
    ])
  })
})
