// The unpacker against GNU tar (ordinary archives) and a corpus of hostile ones (fault 2).
import { Effect, Exit, Fiber } from "effect"
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { existsSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { UnpackError, UnsafeArchive } from "../../src/domain/AgentErrors.js"
import { extractLayers, type LayerFile, makeUnpacker, settled } from "../../src/agent/Unpacker.js"
import { type EntrySpec, listAll, snapshot, writeArchive } from "./fixtures.js"

const run = promisify(execFile)

let sandbox: string
let logs: Array<string>
const opts = (keepSuid = false) => ({ keepSuid, log: (level: string, m: string) => void logs.push(`${level} ${m}`) })

beforeEach(async () => {
  sandbox = await fs.mkdtemp(path.join(os.tmpdir(), "unpacker-"))
  logs = []
})
afterEach(async () => {
  await fs.rm(sandbox, { recursive: true, force: true })
})

const archives = async (...layers: ReadonlyArray<ReadonlyArray<EntrySpec>>): Promise<Array<LayerFile>> => {
  const out: Array<LayerFile> = []
  for (const [i, entries] of layers.entries()) {
    const a = await writeArchive(sandbox, `layer${i}.tar.gz`, entries)
    out.push({ label: `l${i}@v1`, file: a.file })
  }
  return out
}

/** Extracts into sandbox/tree and returns the error, if any; asserts nothing outside the tree changed. */
const extractGuarded = async (layers: ReadonlyArray<LayerFile>, keepSuid = false): Promise<unknown> => {
  const tree = path.join(sandbox, "tree")
  await fs.mkdir(tree)
  const before = (await listAll(sandbox)).filter((p) => !p.startsWith("tree/"))
  let error: unknown
  try {
    await extractLayers(tree, layers, opts(keepSuid))
  } catch (e) {
    error = e
  }
  const after = (await listAll(sandbox)).filter((p) => !p.startsWith("tree/"))
  expect(after).toEqual(before)
  return error
}

describe("ordinary archives", () => {
  it("gives the same tree as GNU tar -x of every layer in order", async () => {
    const src1 = path.join(sandbox, "src1")
    const src2 = path.join(sandbox, "src2")
    // Layer 1: nested dirs, modes, a symlink, a hard link, a file that layer 2 turns into a dir and an empty dir it turns into a file.
    await fs.mkdir(path.join(src1, "app/lib/deep"), { recursive: true })
    await fs.mkdir(path.join(src1, "becomes-file"))
    await fs.writeFile(path.join(src1, "app/main.js"), "v1")
    await fs.writeFile(path.join(src1, "app/lib/deep/x.txt"), "deep")
    await fs.writeFile(path.join(src1, "app/run.sh"), "#!/bin/sh\n")
    await fs.chmod(path.join(src1, "app/run.sh"), 0o750)
    await fs.writeFile(path.join(src1, "becomes-dir"), "file")
    await fs.writeFile(path.join(src1, "app/ro.txt"), "read only")
    await fs.chmod(path.join(src1, "app/ro.txt"), 0o444)
    await fs.symlink("lib/deep/x.txt", path.join(src1, "app/link"))
    await fs.link(path.join(src1, "app/main.js"), path.join(src1, "app/main-hard.js"))
    await fs.chmod(path.join(src1, "app/lib"), 0o700)
    // Layer 2: overwrites a file, replaces file<->dir, adds into an existing dir.
    await fs.mkdir(path.join(src2, "app"), { recursive: true })
    await fs.mkdir(path.join(src2, "becomes-dir"))
    await fs.writeFile(path.join(src2, "becomes-dir/inside"), "in")
    await fs.writeFile(path.join(src2, "becomes-file"), "now a file")
    await fs.writeFile(path.join(src2, "app/main.js"), "v2")
    await fs.writeFile(path.join(src2, "app/new.txt"), "new")
    const t = "2020-01-02T03:04:05"
    await run("touch", ["-h", "-d", t, ...(await listAll(src1)).map((p) => path.join(src1, p)), src1])
    await run("touch", ["-h", "-d", t, ...(await listAll(src2)).map((p) => path.join(src2, p)), src2])
    await run("tar", ["czf", path.join(sandbox, "l1.tgz"), "-C", src1, "."])
    await run("tar", ["czf", path.join(sandbox, "l2.tgz"), "-C", src2, "."])
    const ref = path.join(sandbox, "ref")
    await fs.mkdir(ref)
    await run("tar", ["xzf", path.join(sandbox, "l1.tgz"), "-C", ref])
    await run("tar", ["xzf", path.join(sandbox, "l2.tgz"), "-C", ref])
    const ours = path.join(sandbox, "ours")
    await fs.mkdir(ours)
    await extractLayers(ours, [{ label: "a", file: path.join(sandbox, "l1.tgz") }, { label: "b", file: path.join(sandbox, "l2.tgz") }], opts())
    const [a, b] = [await snapshot(ref), await snapshot(ours)]
    // Directories that layer 2 modified get "now" as mtime in both; compare them without their times.
    const strip = (s: Record<string, string>) =>
      Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.startsWith("dir ") ? v.split(" ").slice(0, 2).join(" ") : v]))
    expect(strip(b)).toEqual(strip(a))
    expect(b["app/main-hard.js"]).toContain("nlink=1") // overwritten: the old link keeps v1, like GNU tar
    expect(b["app/lib/deep"]).toMatch(/^dir 755 1577934245$/)
    expect(b["becomes-file"]).toMatch(/^file/)
    expect(b["becomes-dir"]).toMatch(/^dir/)
  })

  it("keeps modes and mtimes, long names, and an empty archive", async () => {
    const long = "d/" + "n".repeat(150)
    const layers = await archives(
      [
        { path: "d/", type: "dir", mode: 0o750, mtime: 1_500_000_000 },
        { path: long, content: "long", mode: 0o600, mtime: 1_500_000_001 },
        { path: "d/exe", content: "x", mode: 0o775, mtime: 1_500_000_002 },
        { path: "d/empty", content: "", mode: 0o640, mtime: 1_500_000_003 }
      ],
      []
    )
    const tree = path.join(sandbox, "tree")
    await fs.mkdir(tree)
    await extractLayers(tree, layers, opts())
    const s = await snapshot(tree)
    expect(s["d"]).toBe("dir 750 1500000000")
    expect(s[long]).toMatch(/^file 600 1500000001/)
    expect(s["d/exe"]).toMatch(/^file 775 1500000002/)
    expect(s["d/empty"]).toMatch(/^file 640 1500000003/)
  })
})

describe("owners and file data", () => {
  it("writes large files intact and, as root, sets every entry's owner (also under a setgid directory)", async () => {
    const src = path.join(sandbox, "src")
    await fs.mkdir(path.join(src, "d"), { recursive: true })
    const big = randomBytes(3 * 1024 * 1024 + 123)
    await fs.writeFile(path.join(src, "d/big"), big)
    await fs.writeFile(path.join(src, "d/small"), "small\n")
    const mine = path.join(sandbox, "mine.tar.gz")
    const other = path.join(sandbox, "other.tar.gz")
    await run("tar", ["-czf", mine, "--owner=0", "--group=0", "-C", src, "."])
    await run("tar", ["-czf", other, "--owner=1234", "--group=5678", "-C", src, "."])
    const root = process.getuid?.() === 0
    for (const [i, [file, uid, gid]] of ([[mine, 0, 0], [other, 1234, 5678]] as const).entries()) {
      for (const setgid of [false, true]) {
        const tree = path.join(sandbox, `tree${i}${setgid ? "g" : ""}`)
        await fs.mkdir(tree)
        if (setgid && root) {
          await fs.chown(tree, 0, 4321)
          await fs.chmod(tree, 0o2755)
        }
        await extractLayers(tree, [{ label: "o@v1", file }], opts())
        expect((await fs.readFile(path.join(tree, "d/big"))).equals(big)).toBe(true)
        expect(await fs.readFile(path.join(tree, "d/small"), "utf8")).toBe("small\n")
        if (root) {
          for (const f of ["d/big", "d/small"]) {
            const st = await fs.stat(path.join(tree, f))
            expect([f, st.uid, st.gid]).toEqual([f, uid, gid])
          }
        }
      }
    }
  })
})

describe("hostile archives (fault 2)", () => {
  it("refuses ../ paths and names the entry", async () => {
    const err = await extractGuarded(await archives([{ path: "ok.txt", content: "ok" }, { path: "a/../../escape.txt", content: "x" }]))
    expect(err).toBeInstanceOf(UnsafeArchive)
    expect((err as UnsafeArchive).entry).toBe("a/../../escape.txt")
    expect((err as UnsafeArchive).message).toContain("a/../../escape.txt")
    expect(existsSync(path.join(sandbox, "escape.txt"))).toBe(false)
  })

  it("refuses to replace a non-empty directory, names the entry, and writes nothing after it", async () => {
    const err = await extractGuarded(
      await archives(
        [{ path: "d/keep.txt", content: "keep" }],
        [{ path: "d", content: "a file where a full directory is" }, { path: "after.txt", content: "x" }]
      )
    )
    expect(err).toBeInstanceOf(UnsafeArchive)
    expect((err as UnsafeArchive).entry).toBe("d")
    expect((err as UnsafeArchive).message).toContain("cannot replace a non-empty directory")
    expect(await fs.readFile(path.join(sandbox, "tree/d/keep.txt"), "utf8")).toBe("keep")
    expect(existsSync(path.join(sandbox, "tree/after.txt"))).toBe(false)
  })

  it("reports a failing file-system call as an UnpackError of its layer", async () => {
    const err = await extractGuarded(await archives([{ path: `${"n".repeat(300)}.txt`, content: "x" }]))
    expect(err).toBeInstanceOf(UnpackError)
    expect((err as UnpackError).message).toMatch(/^layer l0@v1: ENAMETOOLONG/)
  })

  it("strips a leading / and logs it", async () => {
    const name = `deploy-agent-test-${randomBytes(6).toString("hex")}`
    const err = await extractGuarded(await archives([{ path: `/tmp/${name}`, content: "x" }]))
    expect(err).toBeUndefined()
    expect(existsSync(`/tmp/${name}`)).toBe(false)
    expect(await fs.readFile(path.join(sandbox, "tree/tmp", name), "utf8")).toBe("x")
    expect(logs.join("\n")).toContain('removing leading "/"')
  })

  it("refuses hard links to files outside the tree", async () => {
    await fs.writeFile(path.join(sandbox, "outside.txt"), "secret")
    for (const target of ["../outside.txt", path.join(sandbox, "outside.txt"), "/etc/passwd"]) {
      await fs.rm(path.join(sandbox, "tree"), { recursive: true, force: true })
      const err = await extractGuarded(await archives([{ path: "hl", type: "link", linkpath: target }]))
      expect(err, target).toBeInstanceOf(UnsafeArchive)
    }
    expect(await fs.readFile(path.join(sandbox, "outside.txt"), "utf8")).toBe("secret")
  })

  it("follows relative links inside the tree where GNU tar does, and refuses paths through links that lead out, are not there yet, or dangle", async () => {
    const ok: Array<[ReadonlyArray<ReadonlyArray<EntrySpec>>, string]> = [
      [[[{ path: "sub/", type: "dir" }, { path: "d", type: "symlink", linkpath: "sub" }, { path: "d/x", content: "x" }]], "sub/x"],
      [[[{ path: "a/", type: "dir" }, { path: "b/", type: "dir" }, { path: "a/s", type: "symlink", linkpath: "../b" }], [{ path: "a/s/x", content: "x" }]], "b/x"],
      [[[{ path: "sub/", type: "dir" }, { path: "d", type: "symlink", linkpath: "sub" }, { path: "d/new/x", content: "x" }]], "sub/new/x"]
    ]
    for (const [layers, where] of ok) {
      await fs.rm(path.join(sandbox, "tree"), { recursive: true, force: true })
      expect(await extractGuarded(await archives(...layers))).toBeUndefined()
      expect(await fs.readFile(path.join(sandbox, "tree", where), "utf8")).toBe("x")
    }
    const pwned = `deploy-agent-test-pwned-${process.pid}`
    const refused: Array<[ReadonlyArray<ReadonlyArray<EntrySpec>>, RegExp]> = [
      [[[{ path: "s", type: "symlink", linkpath: sandbox }, { path: `s/${pwned}`, content: "x" }]], /only after the layer/],
      [[[{ path: "s", type: "symlink", linkpath: "/" }], [{ path: `s/${pwned}`, content: "x" }]], /leads out of the tree/],
      [[[{ path: "s", type: "symlink", linkpath: sandbox }], [{ path: `s/${pwned}`, content: "x" }]], /leads out of the tree/],
      [[[{ path: "d/s", type: "symlink", linkpath: "../../.." }], [{ path: `d/s/${pwned}`, content: "x" }]], /leads out of the tree/],
      [[[{ path: "s", type: "symlink", linkpath: "../.." }], [{ path: `s/sub/${pwned}`, content: "x" }]], /leads out of the tree/],
      [[[{ path: "a/", type: "dir" }, { path: "b/", type: "dir" }, { path: "a/s", type: "symlink", linkpath: "../b" }, { path: "a/s/x", content: "x" }]], /only after the layer/],
      [[[{ path: "s", type: "symlink", linkpath: "nowhere" }, { path: `s/${pwned}`, content: "x" }]], /missing/],
      [[[{ path: "s", type: "symlink", linkpath: "/etc" }], [{ path: "h", type: "link", linkpath: "s/passwd" }]], /leads out of the tree/]
    ]
    for (const [layers, reason] of refused) {
      await fs.rm(path.join(sandbox, "tree"), { recursive: true, force: true })
      const err = await extractGuarded(await archives(...layers))
      expect(err, JSON.stringify(layers)).toBeInstanceOf(UnsafeArchive)
      expect((err as UnsafeArchive).reason).toMatch(reason)
      expect(existsSync(path.join(sandbox, pwned))).toBe(false)
      expect(existsSync(`/${pwned}`)).toBe(false)
      expect(existsSync(`/sub/${pwned}`)).toBe(false)
      expect(existsSync(path.join(os.tmpdir(), pwned))).toBe(false)
      expect(existsSync(path.join(os.tmpdir(), "sub", pwned))).toBe(false)
    }
  })

  it("replaces a symlink by a file without following it", async () => {
    await fs.writeFile(path.join(sandbox, "victim"), "original")
    const err = await extractGuarded(await archives([{ path: "f", type: "symlink", linkpath: path.join(sandbox, "victim") }], [{ path: "f", content: "new" }]))
    expect(err).toBeUndefined()
    expect(await fs.readFile(path.join(sandbox, "victim"), "utf8")).toBe("original")
    expect(await fs.readFile(path.join(sandbox, "tree/f"), "utf8")).toBe("new")
  })

  it("refuses symlink loops", async () => {
    const err = await extractGuarded(
      await archives([{ path: "a", type: "symlink", linkpath: "b" }, { path: "b", type: "symlink", linkpath: "a" }, { path: "a/x", content: "x" }])
    )
    expect(err).toBeInstanceOf(UnsafeArchive)
    expect((err as UnsafeArchive).reason).toContain("symbolic links")
  })

  it("skips device nodes and FIFOs with a warning", async () => {
    const err = await extractGuarded(
      await archives([{ path: "null", type: "char" }, { path: "disk", type: "block" }, { path: "pipe", type: "fifo" }, { path: "ok", content: "ok" }])
    )
    expect(err).toBeUndefined()
    expect(await listAll(path.join(sandbox, "tree"))).toEqual(["ok"])
    expect(logs.filter((l) => l.startsWith("warn") && l.includes("skipped"))).toHaveLength(3)
  })

  it("drops setuid/setgid bits unless asked to keep them", async () => {
    const entries: Array<EntrySpec> = [{ path: "su", content: "x", mode: 0o4755 }, { path: "sg", content: "x", mode: 0o2755 }]
    expect(await extractGuarded(await archives(entries))).toBeUndefined()
    expect((await fs.stat(path.join(sandbox, "tree/su"))).mode & 0o7777).toBe(0o755)
    expect((await fs.stat(path.join(sandbox, "tree/sg"))).mode & 0o7777).toBe(0o755)
    await fs.rm(path.join(sandbox, "tree"), { recursive: true })
    expect(await extractGuarded(await archives(entries), true)).toBeUndefined()
    expect((await fs.stat(path.join(sandbox, "tree/su"))).mode & 0o7777).toBe(0o4755)
  })

  it("deploys an image-style tree with absolute symlinks, and refuses an entry that passes through one", async () => {
    const name = `deploy-agent-test-${randomBytes(6).toString("hex")}`
    const image: Array<EntrySpec> = [
      { path: "usr/", type: "dir" },
      { path: "usr/bin/", type: "dir" },
      { path: "usr/bin/sh", content: "sh", mode: 0o755 },
      { path: "bin", type: "symlink", linkpath: "/usr/bin" },
      { path: "lib", type: "symlink", linkpath: "usr/lib" },
      { path: "etc/alternatives/awk", type: "symlink", linkpath: "/usr/bin/mawk" },
      { path: "usr/bin/sh-hard", type: "link", linkpath: "/usr/bin/sh" }
    ]
    expect(await extractGuarded(await archives(image))).toBeUndefined()
    const tree = path.join(sandbox, "tree")
    expect(await fs.readlink(path.join(tree, "bin"))).toBe("/usr/bin")
    expect(await fs.readlink(path.join(tree, "etc/alternatives/awk"))).toBe("/usr/bin/mawk")
    expect((await fs.stat(path.join(tree, "usr/bin/sh-hard"))).nlink).toBe(2)
    // GNU tar would write through `bin` into the host's /usr/bin (a later layer) or fail (the same one).
    for (const layers of [[[...image, { path: `bin/${name}`, content: "via link" }]], [image, [{ path: `bin/${name}`, content: "later layer" }]]]) {
      await fs.rm(tree, { recursive: true, force: true })
      const err = await extractGuarded(await archives(...layers))
      expect(err).toBeInstanceOf(UnsafeArchive)
      expect((err as UnsafeArchive).entry).toBe(`bin/${name}`)
      expect(existsSync(`/usr/bin/${name}`)).toBe(false)
    }
  })
})

describe("Unpacker service", () => {
  const layersOf = (n: string) => archives([{ path: "f", content: n }])

  it("writes .ok after unpacking, reuses a complete tree, redoes one without .ok", async () => {
    const u = makeUnpacker(sandbox, opts())
    const hash = "a".repeat(64)
    const first = await Effect.runPromise(u.prepare(hash, await layersOf("one")))
    expect(first.reused).toBe(false)
    expect(existsSync(path.join(sandbox, "unpacked", `${hash}.ok`))).toBe(true)
    expect((await Effect.runPromise(u.prepare(hash, await layersOf("one")))).reused).toBe(true)
    await fs.rm(path.join(sandbox, "unpacked", `${hash}.ok`))
    await fs.writeFile(path.join(first.root, "junk"), "partial")
    const again = await Effect.runPromise(u.prepare(hash, await layersOf("two")))
    expect(again.reused).toBe(false)
    expect(await listAll(again.root)).toEqual(["f"])
    expect(await fs.readFile(path.join(again.root, "f"), "utf8")).toBe("two")
  })

  it("removes the partial tree of a refused archive and writes no .ok", async () => {
    const u = makeUnpacker(sandbox, opts())
    const hash = "b".repeat(64)
    const exit = await Effect.runPromiseExit(u.prepare(hash, await archives([{ path: "ok", content: "x" }, { path: "../x", content: "x" }])))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(existsSync(path.join(sandbox, "unpacked", hash))).toBe(false)
    expect(existsSync(path.join(sandbox, "unpacked", `${hash}.ok`))).toBe(false)
  })

  it("interrupted while unpacking: the tree is removed only after the writer stopped, and no .ok is written", async () => {
    const u = makeUnpacker(sandbox, opts())
    const hash = "d".repeat(64)
    // Busy: many small files, so that the writer thread has work queued when the interruption comes.
    const many: Array<EntrySpec> = []
    for (let i = 0; i < 30_000; i++) many.push({ path: `d${i % 50}/f${i}`, content: "x".repeat(i % 300) })
    const layers = await archives(many)
    const fiber = Effect.runFork(u.prepare(hash, layers))
    const tree = path.join(sandbox, "unpacked", hash)
    for (let i = 0; i < 1000 && !existsSync(path.join(tree, "d0", "f0")); i++) await new Promise((r) => setTimeout(r, 5))
    expect(existsSync(path.join(tree, "d0", "f0"))).toBe(true)
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(existsSync(tree)).toBe(false)
    expect(existsSync(`${tree}.ok`)).toBe(false)
    // Nothing of the interrupted extraction appears afterwards.
    await new Promise((r) => setTimeout(r, 300))
    expect(existsSync(tree)).toBe(false)
    expect(await fs.readdir(path.join(sandbox, "unpacked"))).toEqual([])
  })

  it("interruption returns only once the extraction has stopped (Effect.tryPromise would return at once)", async () => {
    let stopped = false
    const work = settled(async (signal) => {
      await new Promise((r) => signal.addEventListener("abort", r, { once: true }))
      await new Promise((r) => setTimeout(r, 100)) // the writer thread finishing its batch
      stopped = true
    }, (e) => e)
    const fiber = Effect.runFork(work)
    await new Promise((r) => setTimeout(r, 20))
    await Effect.runPromise(Fiber.interrupt(fiber))
    expect(stopped).toBe(true)
  })

  it("removeOthers keeps the given trees", async () => {
    const u = makeUnpacker(sandbox, opts())
    const [a, b, c] = ["a", "b", "c"].map((x) => x.repeat(64)) as [string, string, string]
    for (const h of [a, b, c]) await Effect.runPromise(u.prepare(h, await layersOf(h)))
    await fs.mkdir(path.join(sandbox, "unpacked", "not-a-hash"))
    const removed = await Effect.runPromise(u.removeOthers([b]))
    expect([...removed].sort()).toEqual([a, c])
    expect((await fs.readdir(path.join(sandbox, "unpacked"))).sort()).toEqual([b, `${b}.ok`, "not-a-hash"])
  })
})
