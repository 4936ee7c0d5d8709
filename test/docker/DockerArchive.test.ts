import { Effect, Exit } from "effect"
import * as fs from "node:fs/promises"
import { Readable } from "node:stream"
import * as zlib from "node:zlib"
import { afterEach, describe, expect, it } from "vitest"
import { imageName, readArchive } from "../../src/docker/DockerArchive.js"
import { tempDir } from "../support/keys.js"
import { classicSave, dir, file, ociSave, tarOf } from "./fixtures.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const read = async (archive: Buffer) => {
  const d = await tempDir("dfd-archive-")
  dirs.push(d)
  return Effect.runPromiseExit(readArchive(Readable.from([archive]), d))
}
const ok = async (archive: Buffer) => {
  const exit = await read(archive)
  if (Exit.isFailure(exit)) throw new Error(`unexpected failure: ${JSON.stringify(exit.cause)}`)
  return exit.value
}
const failure = async (archive: Buffer) => {
  const exit = await read(archive)
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  return JSON.stringify(exit.cause)
}

const l1 = tarOf([dir("etc"), file("etc/os-release", "one\n")])
const l2 = tarOf([file("app", "two\n")])
const sha = async (b: Buffer) => (await import("node:crypto")).createHash("sha256").update(b).digest("hex")

describe("readArchive", () => {
  it("classic layout: RepoTags, layers in manifest order, diff-ids of the uncompressed tars (gzip layers too)", async () => {
    const img = await ok(classicSave({ ref: "registry.local:5000/team/app:1.2", layers: [l1, l2], gzip: [1] }))
    expect(img.reference).toBe("registry.local:5000/team/app:1.2")
    expect(img.layers.map((l) => l.diffId)).toEqual([await sha(l1), await sha(l2)])
    expect(await fs.readFile(img.layers[1]!.tarPath)).toEqual(l2)
  })

  it("OCI layout: the containerd name annotation, blobs by digest, gzip layers", async () => {
    const img = await ok(ociSave({ ref: "docker.io/library/alpine:3.19", layers: [l1, l2], gzip: [0, 1] }))
    expect(img.reference).toBe("docker.io/library/alpine:3.19")
    expect(img.layers.map((l) => l.diffId)).toEqual([await sha(l1), await sha(l2)])
  })

  it("OCI layout with a nested index (one platform) and a gzipped outer stream", async () => {
    const img = await ok(zlib.gzipSync(ociSave({ ref: "app:2", layers: [l1], nested: true })))
    expect(img.reference).toBe("app:2")
    expect(img.layers).toHaveLength(1)
  })

  it("an image saved by id has no reference", async () => {
    expect((await ok(classicSave({ ref: undefined, layers: [l1] }))).reference).toBeUndefined()
  })

  it("refuses several images, several platforms, non-archives and empty input", async () => {
    const two = classicSave({ ref: "a:1", layers: [l1] })
    const manifest = JSON.stringify([{ Config: "c.json", RepoTags: ["a:1"], Layers: [] }, { Config: "c.json", RepoTags: ["b:1"], Layers: [] }])
    const multi = tarOf([file("manifest.json", manifest)])
    expect(await failure(multi)).toMatch(/holds 2 images/)
    expect(two.length).toBeGreaterThan(0)
    expect(await failure(ociSave({ ref: "a:1", layers: [l1], extraManifests: 1 }))).toMatch(/holds 2 image manifests \(linux\/amd64, linux\/arm0\)/)
    expect(await failure(Buffer.from("this is not a tar archive at all".repeat(40)))).toMatch(/not a docker save archive|neither manifest/)
    expect(await failure(Buffer.alloc(0))).toMatch(/the input is empty or not a tar archive/)
    expect(await failure(tarOf([file("hello.txt", "hi")]))).toMatch(/neither manifest.json nor index.json/)
  })

  it("refuses a layer that does not match the config's diff_ids, and a missing layer file", async () => {
    const good = classicSave({ ref: "a:1", layers: [l1] })
    // Same size, different bytes: flip a byte inside the layer's file content ("one" → "One").
    const i = good.indexOf(Buffer.from("one\n"))
    const bad = Buffer.from(good)
    bad[i] = "O".charCodeAt(0)
    // the outer header checksum does not cover data, so the archive still parses
    expect(await failure(bad)).toMatch(/layer 1 does not match the image config/)
    const missing = tarOf([file("manifest.json", JSON.stringify([{ RepoTags: ["a:1"], Layers: ["nope/layer.tar"] }]))])
    expect(await failure(missing)).toMatch(/no file nope\/layer.tar/)
  })

  it("refuses zstd layers with a clear message", async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)])
    const manifest = JSON.stringify([{ RepoTags: ["a:1"], Layers: ["l/layer.tar"] }])
    expect(await failure(tarOf([file("l/layer.tar", zstd), file("manifest.json", manifest)]))).toMatch(/zstd/)
  })
})

describe("readArchive on hostile outer streams", () => {
  // node-tar tried zstd on these (Node 20 has none) and threw inside a stream handler: the process died.
  it("refuses zstd, gzip(zstd) and gzip(gzip(...)) in one line, without crashing", async () => {
    const zstd = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x02, 0x11, 0x00, 0x00, 0x68, 0x69])
    const save = classicSave({ ref: "a:1", layers: [l1] })
    expect(await failure(zstd)).toMatch(/the input is zstd-compressed/)
    expect(await failure(zlib.gzipSync(zstd))).toMatch(/compressed twice/)
    expect(await failure(zlib.gzipSync(zlib.gzipSync(save)))).toMatch(/compressed twice/)
    expect(await failure(Buffer.concat([save.subarray(0, 512), zstd]))).toMatch(/not a docker save archive|neither manifest|no file/)
    expect(await failure(zlib.gzipSync(save).subarray(0, 200))).toMatch(/bad gzip data|not a docker save archive|empty/)
  })
})

describe("imageName", () => {
  it("drops docker.io/library/ and turns : and / into .", () => {
    expect(imageName("myimage:tag")).toBe("myimage.tag")
    expect(imageName("docker.io/library/alpine:3.19")).toBe("alpine.3.19")
    expect(imageName("registry.local:5000/team/app:1.2")).toBe("registry.local.5000.team.app.1.2")
  })
})
