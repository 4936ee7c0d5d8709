// Converts whole `docker save` archives and checks what `tar -x` of the produced layers, in order,
// gives: the image's final filesystem with modes, owners, mtimes, symlinks and hard links intact.
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Readable } from "node:stream"
import * as tar from "tar"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { afterEach, describe, expect, it } from "vitest"
import { packLayer, type PreparedImage, prepareImage } from "../../src/docker/Import.js"
import { tempDir } from "../support/keys.js"
import * as t from "../support/tar.js"
import { classicSave, dir, extractInOrder, file, hardlink, listArchive, ociSave, opaque, readTree, symlink, tarOf, whiteout } from "./fixtures.js"

const run = promisify(execFile)
const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})
const scratch = async () => {
  const d = await tempDir("dfd-repack-")
  dirs.push(d)
  return d
}

const prepare = async (archive: Buffer) => Effect.runPromise(prepareImage(Readable.from([archive]), await scratch()))
const packAll = async (img: PreparedImage) => {
  const out: Array<string> = []
  for (const l of img.layers) out.push((await Effect.runPromise(packLayer(img, l.number))).path)
  return out
}

const longDir = `deep/${"x".repeat(60)}/${"y".repeat(60)}`
const old = new Date("2020-05-06T07:08:09Z")

const layer1 = tarOf([
  dir("etc"), file("etc/passwd", "root\n"), file("etc/hosts", "h1\n"),
  dir("etc/conf.d"), file("etc/conf.d/a.conf", "a\n"), file("etc/conf.d/b.conf", "b\n"),
  dir("usr"), dir("usr/bin"), file("usr/bin/tool", "tool-v1\n", { mode: 0o755 }), hardlink("usr/bin/tool-hl", "usr/bin/tool"),
  file("usr/bin/same", "same\n"), hardlink("usr/bin/same-hl", "usr/bin/same"),
  dir("var"), dir("var/cache"), file("var/cache/junk", "junk\n"),
  symlink("lib", "usr/lib"),
  dir("deep"), dir(`deep/${"x".repeat(60)}`), dir(longDir), file(`${longDir}/file.txt`, "long\n"),
  dir("home"), dir("home/u", { uid: 1000, gid: 1000, mode: 0o700 }),
  file("home/u/.profile", "profile\n", { uid: 1000, gid: 1000, mode: 0o600, mtime: old })
])
const layer2 = tarOf([
  dir("etc"), whiteout("etc/hosts"),
  dir("etc/conf.d"), opaque("etc/conf.d"), file("etc/conf.d/c.conf", "c\n"),
  whiteout("var/cache"),
  hardlink("usr/bin/tool2", "usr/bin/tool"),
  dir("app"), file("app/main", "main-v1\n")
])
const layer3 = tarOf([dir("app"), file("app/main", "main-v2\n"), whiteout("usr/bin/tool")])

const expected = {
  app: { type: "dir" },
  "app/main": { type: "file", content: "main-v2\n" },
  deep: { type: "dir" },
  [`deep/${"x".repeat(60)}`]: { type: "dir" },
  [longDir]: { type: "dir" },
  [`${longDir}/file.txt`]: { type: "file", content: "long\n" },
  etc: { type: "dir" },
  "etc/conf.d": { type: "dir" },
  "etc/conf.d/c.conf": { type: "file", content: "c\n" },
  "etc/passwd": { type: "file", content: "root\n" },
  home: { type: "dir" },
  "home/u": { type: "dir" },
  "home/u/.profile": { type: "file", content: "profile\n" },
  lib: { type: "symlink", target: "usr/lib" },
  usr: { type: "dir" },
  "usr/bin": { type: "dir" },
  "usr/bin/same": { type: "file", content: "same\n" },
  "usr/bin/same-hl": { type: "file", content: "same\n" },
  "usr/bin/tool-hl": { type: "file", content: "tool-v1\n" },
  "usr/bin/tool2": { type: "file", content: "tool-v1\n" },
  var: { type: "dir" }
}

describe("conversion", () => {
  for (const [layout, save] of [["classic", classicSave], ["OCI", ociSave]] as const) {
    it(`${layout}: tar -x of the layers in order gives the image's final tree; no whiteout is shipped`, async () => {
      const img = await prepare(save({ ref: "app:1", layers: [layer1, layer2, layer3], gzip: [1] }))
      const archives = await packAll(img)
      const root = path.join(await scratch(), "root")
      await extractInOrder(archives, root)
      expect(await readTree(root)).toEqual(expected)
      for (const a of archives) expect((await listArchive(a)).filter((n) => n.includes(".wh."))).toEqual([])
      // hard link inside one layer whose target survives stays a link
      const st1 = await fs.stat(path.join(root, "usr/bin/same"))
      const st2 = await fs.stat(path.join(root, "usr/bin/same-hl"))
      expect(st1.ino).toBe(st2.ino)
    })
  }

  it("modes, owners and mtimes survive; the long path is intact", async () => {
    const img = await prepare(classicSave({ ref: "app:1", layers: [layer1, layer2, layer3] }))
    const [first] = await packAll(img)
    const seen = new Map<string, tar.ReadEntry>()
    await tar.t({ file: first!, onReadEntry: (e) => void seen.set(e.path.replace(/\/$/, ""), e) })
    const profile = seen.get("home/u/.profile")!
    expect([profile.mode, profile.uid, profile.gid, profile.mtime?.toISOString()]).toEqual([0o600, 1000, 1000, old.toISOString()])
    expect(seen.get("home/u")!.mode).toBe(0o700)
    expect(seen.get("usr/bin/tool")).toBeUndefined() // deleted by layer 3
    expect(seen.get("usr/bin/tool-hl")!.type).toBe("File") // its link target was deleted: now a copy
    expect(seen.get("usr/bin/tool-hl")!.mode).toBe(0o644)
    expect(seen.get("lib")!.linkpath).toBe("usr/lib")
    expect(seen.has(`${longDir}/file.txt`)).toBe(true)
  })

  it("a layer whose hard link points into an earlier layer extracts on its own", async () => {
    const img = await prepare(classicSave({ ref: "app:1", layers: [layer1, layer2] }))
    const archives = await packAll(img)
    const alone = path.join(await scratch(), "alone")
    await extractInOrder([archives[1]!], alone)
    expect((await readTree(alone))["usr/bin/tool2"]).toEqual({ type: "file", content: "tool-v1\n" })
  })

  it("versions: stable across re-imports and layouts; an earlier layer's version follows what later layers delete", async () => {
    const a = await prepare(classicSave({ ref: "app:1", layers: [layer1, layer2, layer3], gzip: [0] }))
    const b = await prepare(ociSave({ ref: "app:1", layers: [layer1, layer2, layer3], gzip: [2] }))
    expect(b.layers.map((l) => l.version)).toEqual(a.layers.map((l) => l.version))
    const [v1, v2, v3] = a.layers.map((l) => l.version)
    expect(v3).toBe(a.layers[2]!.diffId.slice(0, 12)) // nothing later: untouched
    expect(v1).toMatch(new RegExp(`^${a.layers[0]!.diffId.slice(0, 12)}-[0-9a-f]{8}$`))
    expect(v2).toMatch(/-[0-9a-f]{8}$/) // converted cross-layer hard link
    const otherLayer3 = tarOf([dir("app"), file("app/main", "main-v2\n"), whiteout("etc/passwd")])
    const c = await prepare(classicSave({ ref: "app:1", layers: [layer1, layer2, otherLayer3] }))
    expect(c.layers[0]!.version).not.toBe(v1)
    expect(c.layers[1]!.version).toBe(v2)
    const onlyFirst = await prepare(classicSave({ ref: "app:1", layers: [layer1] }))
    expect(onlyFirst.layers[0]!.version).toBe(onlyFirst.layers[0]!.diffId.slice(0, 12))
  })

  for (const format of ["gnu", "pax", "ustar"] as const) {
    it(`layers written by GNU tar --format=${format} (long names and link targets) round-trip`, async () => {
      const src = path.join(await scratch(), "src")
      const long = `${"n".repeat(90)}/${"m".repeat(90)}`
      await fs.mkdir(path.join(src, long), { recursive: true })
      await fs.writeFile(path.join(src, long, "f.txt"), "deep\n", { mode: 0o640 })
      await fs.link(path.join(src, long, "f.txt"), path.join(src, "hl"))
      await fs.symlink(`${long}/f.txt`, path.join(src, "sl"))
      await fs.writeFile(path.join(src, "empty"), "")
      const layerTar = path.join(await scratch(), "layer.tar")
      // ustar cannot hold a 180-byte link target: that format gets a short one
      if (format === "ustar") {
        await fs.rm(path.join(src, "sl"))
        await fs.symlink("empty", path.join(src, "sl"))
      }
      await run("tar", [`--format=${format}`, "-cf", layerTar, "-C", src, "."])
      const img = await prepare(classicSave({ ref: "g:1", layers: [await fs.readFile(layerTar)] }))
      const out = path.join(await scratch(), "out")
      await extractInOrder(await packAll(img), out)
      expect(await readTree(out, true)).toEqual(await readTree(src, true))
      expect((await fs.stat(path.join(out, "hl"))).ino).toBe((await fs.stat(path.join(out, long, "f.txt"))).ino)
    })
  }

  it("refuses, with the agents' message, an image layer agents would refuse (it would never deploy)", async () => {
    const trick = t.tar(t.pax([["comment", "x\n13 path=evil\n"], ["path", "visible"]]), t.file("short", "x"))
    const exit = await Effect.runPromiseExit(prepareImage(Readable.from([classicSave({ ref: "a:1", layers: [trick] })]), await scratch()))
    expect(JSON.stringify(exit)).toMatch(/layer 1: PAX comment holds a newline/)
    const sparse = t.tar(t.file("s", "x", { type: "S" }))
    const exit2 = await Effect.runPromiseExit(prepareImage(Readable.from([classicSave({ ref: "a:1", layers: [sparse] })]), await scratch()))
    expect(JSON.stringify(exit2)).toMatch(/layer 1: refused entry .*GNU sparse files are not supported/)
  })

  it("refuses a layer with an entry escaping the root", async () => {
    const evil = tarOf([file("../../etc/evil", "x")])
    const exit = await Effect.runPromiseExit(prepareImage(Readable.from([classicSave({ ref: "a:1", layers: [evil] })]), await scratch()))
    expect(JSON.stringify(exit)).toMatch(/layer 1: refused entry .*path contains a/)
  })
})
