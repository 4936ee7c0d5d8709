// publish() against an in-memory registry (a test ImportTarget): what is uploaded, which
// commands run, and that re-importing an unchanged image changes nothing.
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import { Readable } from "node:stream"
import { afterEach, describe, expect, it } from "vitest"
import type { Command, LayerRef } from "../../src/domain/Commands.js"
import type { ComponentName, Version } from "../../src/domain/Names.js"
import { configurationName, prepareImage, publish } from "../../src/docker/Import.js"
import { ImportTarget } from "../../src/docker/ImportTarget.js"
import { tempDir } from "../support/keys.js"
import { classicSave, dir, file, ociSave, tarOf, whiteout } from "./fixtures.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

/** Just enough of the registry's console for deploy-from-docker, with a log of changing commands. */
class FakeRegistry {
  uploads = new Set<string>()
  versions = new Map<string, Array<string>>()
  confs = new Map<string, Array<string>>()
  log: Array<string> = []
  uploadCount = 0
  failOn: string | undefined

  layer(): Layer.Layer<ImportTarget> {
    return Layer.succeed(ImportTarget, {
      run: (cmd) => Effect.sync(() => this.run(cmd)),
      upload: (file) =>
        Effect.promise(async () => {
          const bytes = await fs.readFile(file)
          this.uploads.add(createHash("sha256").update(bytes).digest("hex"))
          this.uploadCount++
          return bytes.length
        })
    })
  }

  run(cmd: Command): { output: string; ok: boolean } {
    const bad = (output: string) => ({ output: `${output}\n`, ok: false })
    if (cmd._tag === this.failOn) return bad("internal error: disk full")
    switch (cmd._tag) {
      case "showcomp": {
        const vs = this.versions.get(cmd.name)
        return vs ? { output: JSON.stringify({ Name: cmd.name, Versions: vs.map((v) => ({ Version: v, Hash: "h", Ctime: "t" })) }), ok: true } : bad(`component "${cmd.name}" not found`)
      }
      case "addver": {
        if (!this.uploads.has(cmd.hash)) return bad("no uploaded file with given hash found")
        const vs = this.versions.get(cmd.name) ?? []
        if (vs.includes(cmd.version)) return bad(`version "${cmd.version}" already exists`)
        this.versions.set(cmd.name, [...vs, cmd.version])
        this.log.push(`addver ${cmd.name} ${cmd.version}`)
        return { output: "", ok: true }
      }
      case "showconf": {
        const ls = this.confs.get(cmd.name)
        if (!ls) return bad(`configuration "${cmd.name}" not found`)
        return { output: JSON.stringify({ Name: cmd.name, Layers: ls.map((l) => ({ Name: l.split(":")[0], Version: l.split(":")[1] })) }), ok: true }
      }
      case "addconf":
      case "replaceconf": {
        if ((cmd._tag === "addconf") === this.confs.has(cmd.name)) return bad("wrong command")
        for (const l of cmd.layers) if (!this.versions.get(l.component)?.includes(l.version)) return bad(`no version "${l.version}" for component "${l.component}" found`)
        this.confs.set(cmd.name, cmd.layers.map((l) => `${l.component}:${l.version}`))
        this.log.push(`${cmd._tag} ${cmd.name}`)
        return { output: "", ok: true }
      }
      default:
        return bad(`unexpected command ${cmd._tag}`)
    }
  }
}

const l1 = tarOf([dir("etc"), file("etc/a", "a\n"), file("etc/b", "b\n")])
const l2 = tarOf([file("app", "v1\n")])
const l2b = tarOf([file("app", "v2\n"), whiteout("etc/b")])

const run = async (reg: FakeRegistry, archive: Buffer, name?: string, extra: ReadonlyArray<LayerRef> = []) => {
  const d = await tempDir("dfd-import-")
  dirs.push(d)
  return Effect.runPromise(
    Effect.gen(function* () {
      const img = yield* prepareImage(Readable.from([archive]), d)
      const conf = yield* configurationName(name, img)
      return yield* publish(img, conf, extra)
    }).pipe(Effect.provide(reg.layer()))
  )
}

describe("publish", () => {
  it("uploads every layer of a new image and creates its configuration", async () => {
    const reg = new FakeRegistry()
    const report = await run(reg, classicSave({ ref: "team/app:1.2", layers: [l1, l2] }))
    expect(report.configuration).toBe("team.app.1.2")
    expect(report.change).toBe("created")
    expect(reg.uploadCount).toBe(2)
    expect(reg.log).toEqual([
      `addver team.app.1.2.l1 ${report.layers[0]!.version}`,
      `addver team.app.1.2.l2 ${report.layers[1]!.version}`,
      "addconf team.app.1.2"
    ])
  })

  it("re-importing the same image (even in the other layout) creates nothing", async () => {
    const reg = new FakeRegistry()
    await run(reg, classicSave({ ref: "app:1", layers: [l1, l2] }))
    const before = [...reg.log]
    const report = await run(reg, ociSave({ ref: "app:1", layers: [l1, l2], gzip: [0, 1] }))
    expect(report.change).toBe("unchanged")
    expect(report.layers.every((l) => l.uploaded === undefined)).toBe(true)
    expect(reg.uploadCount).toBe(2)
    expect(reg.log).toEqual(before)
  })

  it("a changed image uploads only what changed and replaces the configuration's layers", async () => {
    const reg = new FakeRegistry()
    const first = await run(reg, classicSave({ ref: "app:1", layers: [l1, l2] }))
    const second = await run(reg, classicSave({ ref: "app:1", layers: [l1, l2b] }))
    expect(second.change).toBe("updated")
    // layer 1 loses etc/b to the new layer 2's whiteout: a new version of l1 as well
    expect(second.layers[0]!.version).not.toBe(first.layers[0]!.version)
    expect(reg.uploadCount).toBe(4)
    expect(reg.confs.get("app.1")).toEqual(second.layers.map((l) => `${l.component}:${l.version}`))
    // back to the first image: everything is there already, only the configuration moves
    const third = await run(reg, classicSave({ ref: "app:1", layers: [l1, l2] }))
    expect(third.change).toBe("updated")
    expect(reg.uploadCount).toBe(4)
  })

  it("-name overrides the image name and -layer components are appended", async () => {
    const reg = new FakeRegistry()
    reg.versions.set("config", ["v01"])
    const extra = [{ component: "config" as ComponentName, version: "v01" as Version }]
    await run(reg, classicSave({ ref: undefined, layers: [l1] }), "web", extra)
    expect(reg.confs.get("web")).toEqual([`web.l1:${[...reg.versions.get("web.l1")!][0]}`, "config:v01"])
  })

  it("an image without a name needs -name; a registry refusal is reported with its message", async () => {
    const reg = new FakeRegistry()
    await expect(run(reg, classicSave({ ref: undefined, layers: [l1] }))).rejects.toThrow(/no name.*-name/)
    reg.failOn = "addconf"
    await expect(run(reg, classicSave({ ref: "app:1", layers: [l1] }))).rejects.toThrow(/registry refused "addconf": internal error: disk full/)
  })
})
