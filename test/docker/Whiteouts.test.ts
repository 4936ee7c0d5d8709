import { describe, expect, it } from "vitest"
import type { EntryKind, TarEntry } from "../../src/docker/TarFile.js"
import { type LayerIndex, planLayers, versionOf } from "../../src/docker/Whiteouts.js"

const e = (path: string, kind: EntryKind = "File", linkpath = ""): TarEntry => ({
  path, kind, linkpath, mode: 0o644, uid: 0, gid: 0, uname: "", gname: "", mtime: new Date(0), size: kind === "File" ? 1 : 0,
  devmaj: 0, devmin: 0, dataOffset: 0
})
const layer = (id: string, ...entries: Array<TarEntry>): LayerIndex => ({ diffId: id.repeat(64).slice(0, 64), entries })
/** Paths each layer keeps. */
const kept = (layers: Array<LayerIndex>) =>
  planLayers(layers).map((p, l) => layers[l]!.entries.filter((_, i) => p.drop[i] === 0).map((x) => x.path))

describe("planLayers", () => {
  it("removes a whited-out file and directory subtree from earlier layers, and never ships markers", () => {
    const layers = [
      layer("a", e("etc", "Directory"), e("etc/a"), e("etc/b"), e("var", "Directory"), e("var/cache", "Directory"), e("var/cache/x")),
      layer("b", e("etc", "Directory"), e("etc/.wh.a"), e("var/.wh.cache"), e("new"))
    ]
    expect(kept(layers)).toEqual([["etc", "etc/b", "var"], ["etc", "new"]])
    const plans = planLayers(layers)
    expect(plans[0]!.removed).toEqual(["etc/a", "var/cache", "var/cache/x"])
    expect(plans[1]!.removed).toEqual([])
  })

  it("an opaque directory hides earlier contents but keeps the directory and its own layer's files", () => {
    const layers = [
      layer("a", e("d", "Directory"), e("d/old"), e("d/sub", "Directory"), e("d/sub/x"), e("dx")),
      layer("b", e("d", "Directory"), e("d/.wh..wh..opq"), e("d/new"))
    ]
    expect(kept(layers)).toEqual([["d", "dx"], ["d", "d/new"]])
  })

  it("an opaque marker at the root hides every earlier entry", () => {
    expect(kept([layer("a", e("d", "Directory"), e("d/x"), e("f")), layer("b", e(".wh..wh..opq"), e("g"))])).toEqual([[], ["g"]])
  })

  it("a whiteout applies to every earlier layer, not to its own or later ones", () => {
    const layers = [layer("a", e("f")), layer("b", e("f")), layer("c", e(".wh.f")), layer("d", e("f"))]
    expect(kept(layers)).toEqual([[], [], [], ["f"]])
  })

  it("a later file replaces an earlier directory tree; a later directory replaces an earlier file", () => {
    const layers = [
      layer("a", e("x", "Directory"), e("x/in"), e("y"), e("z")),
      layer("b", e("x"), e("y", "Directory"), e("z"))
    ]
    // z is overwritten by extraction, not removed
    expect(kept(layers)).toEqual([["z"], ["x", "y", "z"]])
  })

  it("versions: the diff-id prefix when untouched; a suffix that depends on what was removed", () => {
    const base = layer("a", e("f"), e("g"))
    const untouched = planLayers([base, layer("b", e("h"))])
    expect(untouched[0]!.version).toBe("a".repeat(12))
    const delF = planLayers([base, layer("b", e(".wh.f"))])
    const delG = planLayers([base, layer("c", e(".wh.g"))])
    const delF2 = planLayers([base, layer("c", e(".wh.f"), e("other"))])
    expect(delF[0]!.version).toMatch(/^a{12}-[0-9a-f]{8}$/)
    expect(delF[0]!.version).not.toBe(delG[0]!.version)
    // same deletion applied by a different later layer: same content, same version
    expect(delF2[0]!.version).toBe(delF[0]!.version)
    // deleting something the layer does not have changes nothing
    expect(planLayers([base, layer("b", e(".wh.nothere"))])[0]!.version).toBe("a".repeat(12))
    expect(versionOf("b".repeat(64), [])).toBe("bbbbbbbbbbbb")
  })

  it("hard links: kept within a layer, copied from an earlier layer, copied when the target is removed, dropped when dangling", () => {
    const layers = [
      layer("a", e("bin", "Directory"), e("bin/tool"), e("lib")),
      layer("b", e("t1"), e("t1link", "Link", "t1"), e("t2"), e("t2link", "Link", "t2"), e("crosslink", "Link", "bin/tool"), e("dangling", "Link", "nope")),
      layer("c", e(".wh.t2"))
    ]
    const plans = planLayers(layers)
    const p = plans[1]!
    const names = layers[1]!.entries.map((x) => x.path)
    const at = (n: string) => names.indexOf(n)
    expect(p.drop[at("t1link")]).toBe(0)
    expect(p.copies.has(at("t1link"))).toBe(false)
    expect(p.drop[at("t2")]).toBe(1)
    expect(p.copies.get(at("t2link"))).toEqual({ layer: 1, entry: at("t2") })
    expect(p.copies.get(at("crosslink"))).toEqual({ layer: 0, entry: 1 })
    expect(p.drop[at("dangling")]).toBe(1)
    expect(p.warnings.join("\n")).toMatch(/dangling points to nope/)
  })

  it("the root entry is never shipped", () => {
    expect(kept([layer("a", e("", "Directory"), e("f"))])).toEqual([["f"]])
  })
})
