import { describe, expect, it } from "@effect/vitest"
import { Rollouts } from "../../src/registry/Rollouts.js"
import { Effect, FastCheck as fc, Layer, Logger, LogLevel, TestClock } from "effect"
import { unlink, writeFile } from "node:fs/promises"
import { commandList, commandUsage, specOf } from "../../src/domain/Commands.js"
import { configHash } from "../../src/domain/ConfigHash.js"
import { BlobStore } from "../../src/registry/BlobStore.js"
import { CommandInterpreter, CommandInterpreterLive, tabwrite } from "../../src/registry/CommandInterpreter.js"
import { HostStatus } from "../../src/registry/HostStatus.js"
import { LayerVerdicts } from "../../src/registry/LayerVerdicts.js"
import { Storage } from "../../src/registry/Storage.js"
import { SignaturesNone } from "../../src/registry/Signatures.js"
import { Uploads } from "../../src/registry/Uploads.js"
import { StorageError } from "../../src/domain/Errors.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { file, gz, pax, tar } from "../support/tar.js"
import * as path from "node:path"
import { alice, bob, coreLayer, dumpTables, layerOf, run, sha256, stageUpload, tempDirScoped, TestCore } from "../support/layers.js"

const T0 = Date.parse("2017-03-01T11:23:36Z")

const okRun = (line: string, who = alice) =>
  Effect.map(run(line, who), (r) => {
    expect(r, line).toMatchObject({ exitCode: 0 })
    return r.output
  })

const failRun = (line: string) =>
  Effect.map(run(line), (r) => {
    expect(r.exitCode, line).toBe(1)
    return r.output
  })

/** Everything the registry holds: tables, blobs, pending uploads. */
const snapshot = Effect.gen(function* () {
  return { tables: yield* dumpTables, blobs: yield* (yield* BlobStore).list, uploads: yield* (yield* Uploads).list }
})

/** code v01 (11:23:36), code v02 (11:25:00), config v01 (11:26:00); project1 = code:v01 config:v01 at 11:28:18. */
const fixture = Effect.gen(function* () {
  yield* TestClock.setTime(T0)
  const code1 = yield* stageUpload("code one")
  yield* okRun(`addver -name code -version v01 -hash ${code1}`)
  yield* TestClock.setTime(Date.parse("2017-03-01T11:25:00Z"))
  const code2 = yield* stageUpload("code two")
  yield* okRun(`addver -name code -version v02 -hash ${code2}`)
  yield* TestClock.setTime(Date.parse("2017-03-01T11:26:00Z"))
  const config1 = yield* stageUpload("config one")
  yield* okRun(`addver -name=config --version v01 --hash=${config1}`)
  yield* TestClock.setTime(Date.parse("2017-03-01T11:28:18.25Z"))
  yield* okRun("addconf -name project1 -layer code:v01 -layer config:v01")
  return { code1, code2, config1 }
})

describe("tabwrite", () => {
  it("pads every column but the last to its widest cell plus 3", () => {
    expect(tabwrite([["code", "v01", "t1"], ["config", "v0001", "t2"]])).toBe("code     v01     t1\nconfig   v0001   t2\n")
    expect(tabwrite([["ü", "x"], ["ab", "y"]])).toBe("ü    x\nab   y\n") // runes, not bytes
    expect(tabwrite([])).toBe("")
  })
})

describe("CommandInterpreter", () => {
  it.scoped("renders showcomp, showconf and showconf -v as the original did", () =>
    Effect.gen(function* () {
      const { code1, config1 } = yield* fixture
      expect(yield* okRun("showcomp -name code")).toBe("2017-03-01T11:23:36Z   v01\n2017-03-01T11:25:00Z   v02\n")
      expect(yield* okRun("showconf -name project1")).toBe("code     v01   2017-03-01T11:23:36Z\nconfig   v01   2017-03-01T11:26:00Z\n")
      expect(yield* okRun("showconf -v -name project1")).toBe(
        `Name:\tproject1\nMtime:\t2017-03-01T11:28:18Z\nHash:\t${configHash([code1, config1])}\n\n` +
          "code     v01   2017-03-01T11:23:36Z\nconfig   v01   2017-03-01T11:26:00Z\n"
      )
      expect(yield* okRun("components")).toBe("code\nconfig\n")
      expect(yield* okRun("configurations")).toBe("project1\n")
      expect(yield* okRun("help")).toBe(commandList())
      expect(yield* okRun("showconf -h")).toBe(commandUsage(specOf("showconf")!))
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("prints JSON for -json in the documented shapes", () =>
    Effect.gen(function* () {
      const { code1, code2, config1 } = yield* fixture
      expect(JSON.parse(yield* okRun("components -json"))).toEqual(["code", "config"])
      expect(JSON.parse(yield* okRun("configurations -json"))).toEqual(["project1"])
      expect(JSON.parse(yield* okRun("showcomp -name code -json"))).toEqual({
        Name: "code",
        Versions: [
          { Version: "v01", Hash: code1, Ctime: "2017-03-01T11:23:36Z" },
          { Version: "v02", Hash: code2, Ctime: "2017-03-01T11:25:00Z" }
        ]
      })
      const doc = JSON.parse(yield* okRun("showconf -name project1 -json"))
      expect(Object.keys(doc)).toEqual(["Name", "Mtime", "Hash", "Layers"])
      expect(doc).toMatchObject({ Name: "project1", Mtime: "2017-03-01T11:28:18.25Z", Hash: configHash([code1, config1]) })
      expect(doc.Layers[1]).toEqual({ Name: "config", Version: "v01", File: `files/${config1}`, Hash: config1, Ctime: "2017-03-01T11:26:00Z" })
      const hist = JSON.parse(yield* okRun("history -name project1 -json"))
      expect(hist).toEqual([
        {
          Time: "2017-03-01T11:28:18.25Z",
          Hash: configHash([code1, config1]),
          Who: { User: "alice", Fingerprint: "SHA256:aliceFingerprint", Comment: "alice@laptop" },
          Layers: [
            { Name: "code", Version: "v01", Hash: code1 },
            { Name: "config", Version: "v01", Hash: config1 }
          ],
          Current: true
        }
      ])
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("bumpconf prints the roll-back hint; bumping to the version in place writes nothing (fault 8)", () =>
    Effect.gen(function* () {
      const { code1, code2, config1 } = yield* fixture
      yield* TestClock.setTime(Date.parse("2017-03-01T12:00:00Z"))
      expect(yield* okRun(`bumpconf -name project1 -component code`, bob)).toBe(
        `to roll back run:\tchangeconf -name="project1" -component="code" -version="v01"\n`
      )
      const before = yield* snapshot
      expect(yield* okRun(`bumpconf -name project1 -component code`)).toBe("")
      expect(yield* snapshot).toEqual(before)
      // The current state's row ends in "(current)"; everything else is the original's format.
      expect(yield* okRun("history -name project1")).toBe(
        `2017-03-01T12:00:00Z   ${configHash([code2, config1])}   ${"SHA256:bobFingerprint".padEnd(39)}code:v02 config:v01   (current)\n` +
          `2017-03-01T11:28:18Z   ${configHash([code1, config1])}   SHA256:aliceFingerprint alice@laptop   code:v01 config:v01\n`
      )
      expect(yield* okRun("history -name project1 -n 1")).toBe(
        `2017-03-01T12:00:00Z   ${configHash([code2, config1])}   SHA256:bobFingerprint   code:v02 config:v01   (current)\n`
      )
      expect(JSON.parse(yield* okRun("history -name project1 -n=2 -json")).map((s: { Current: boolean }) => s.Current)).toEqual([true, false])
      expect((yield* run("history -name project1 -n 0")).output).toBe('-n: "0" is not a positive number of states\n')
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("rollback prints what changed; -expect guards every change", () =>
    Effect.gen(function* () {
      const { code1, code2, config1 } = yield* fixture
      const h1 = configHash([code1, config1])
      const h2 = configHash([code2, config1])
      expect(yield* okRun(`changeconf -name project1 -component code -version v02 -expect ${h1}`)).toBe("")
      const before = yield* snapshot
      expect(yield* failRun(`changeconf -name project1 -component code -version v01 -expect ${h1}`)).toBe(
        `configuration "project1" has hash ${h2}, not the expected ${h1}; nothing changed\n`
      )
      expect(yield* failRun(`rollback -name project1 -expect ${h1}`)).toMatch(/not the expected/)
      expect(yield* failRun(`replaceconf -name project1 -layer code:v01 -expect ${h1}`)).toMatch(/not the expected/)
      expect(yield* failRun(`bumpconf -name project1 -component code -expect ${h1}`)).toMatch(/not the expected/)
      expect(yield* snapshot).toEqual(before)
      expect(yield* okRun(`rollback -name project1 -expect ${h2}`)).toBe(`rolled back "project1" to ${h1}:\ncode   v02 -> v01\n`)
      expect(yield* okRun(`rollback -name project1 -to ${h1}`)).toBe(`configuration "project1" is already at ${h1}\n`)
      expect(yield* okRun(`replaceconf -name project1 -layer config:v01`)).toBe("")
      expect(yield* okRun(`rollback -name project1`)).toBe(`rolled back "project1" to ${h1}:\ncode   (none) -> v01\n`)
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("20 operators at once with the same -expect: one succeeds, 19 are told it is stale", () =>
    Effect.gen(function* () {
      const { code1, code2, config1 } = yield* fixture
      const h1 = configHash([code1, config1])
      const results = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) =>
          run(`${i % 2 ? "bumpconf" : "changeconf -version v02"} -name project1 -component code -expect ${h1}`)
        ),
        { concurrency: "unbounded" }
      )
      expect(results.filter((r) => r.exitCode === 0)).toHaveLength(1)
      const stale = `configuration "project1" has hash ${configHash([code2, config1])}, not the expected ${h1}; nothing changed\n`
      expect(results.filter((r) => r.exitCode === 1).every((r) => r.output === stale)).toBe(true)
      expect((yield* okRun("history -name project1")).split("\n")).toHaveLength(3)
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("a failed addver keeps the upload claimable (fault 1)", () =>
    Effect.gen(function* () {
      const { code1 } = yield* fixture
      const h = yield* stageUpload("code three")
      const before = yield* snapshot
      const out = yield* failRun(`addver -name code -version v01 -hash ${h}`)
      expect(out).toBe(`version "v01" already exists\n`)
      expect(out).not.toMatch(/\//) // no internal paths
      expect(yield* snapshot).toEqual(before)
      expect(yield* (yield* Uploads).find(h)).toBeTruthy()
      expect(yield* okRun(`addver -name code -version v03 -hash ${h}`)).toBe("")
      expect(yield* (yield* BlobStore).has(h)).toBe(true)
      expect(yield* (yield* Uploads).list).not.toContain(h)
      // a hash never uploaded
      expect(yield* failRun(`addver -name code -version v04 -hash ${sha256("nothing")}`)).toBe("no uploaded file with given hash found\n")
      // a hash already stored needs no upload: the version is recorded, the blob left as it is
      expect(yield* okRun(`addver -name other -version v1 -hash ${code1}`)).toBe("")
      expect(yield* okRun("showcomp -name other")).toMatch(/ v1\n$/)
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("addver refuses a layer an agent would refuse, with the agent's message, and keeps the upload", () =>
    Effect.gen(function* () {
      yield* fixture
      const zstd = yield* stageUpload(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x49, 0, 0]))
      const evil = yield* stageUpload(gz(tar(pax([["comment", "x\n13 path=evil\n"], ["path", "visible"]]), file("short"))))
      const deep = yield* stageUpload(gz(tar(pax([["path", "a/".repeat(48000) + "f"]]), file("x"))))
      const before = yield* snapshot
      expect(yield* failRun(`addver -name code -version v9 -hash ${zstd}`)).toBe("layer code@v9: zstd-compressed; only gzip is accepted\n")
      expect(yield* failRun(`addver -name code -version v9 -hash ${evil}`)).toBe("layer code@v9: PAX comment holds a newline\n")
      expect(yield* failRun(`addver -name code -version v9 -hash ${deep}`)).toMatch(
        /^layer code@v9: refused entry "(a\/){100}…": path is longer than 4096 bytes\n$/
      )
      expect(yield* snapshot).toEqual(before)
      // the verdict is remembered per content: the same refusal under another name, without reading again
      const { dir } = yield* RegistryConfig
      yield* Effect.promise(() => writeFile(path.join(dir, "uploads", evil), layerOf("fine")))
      expect(yield* failRun(`addver -name other -version v1 -hash ${evil}`)).toBe("layer other@v1: PAX comment holds a newline\n")
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("bad input is one line, exit 1, and leaves the store exactly as it was", () =>
    Effect.gen(function* () {
      yield* fixture
      yield* stageUpload("pending")
      const before = yield* snapshot
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["addconf -name project1 -layer code:v02", `configuration "project1" already exists, use replaceconf to change it`],
        ["addconf -name p2 -layer code:v01 -layer code:v02", `component "code" is used more than once`],
        ["addconf -name p2 -layer code:v01 -layer config:v9", `no version "v9" for component "config" found`],
        ["showcomp -name nope", `component "nope" not found`],
        ["showcomp -name code extra", `unexpected argument "extra"`],
        ["showconf -name nope", `configuration "nope" not found`],
        ["delconf -name project1", "Run command with -force flag to confirm removal"],
        ["delver -name code -version v01", `version is used by configuration "project1"`],
        ["delcomp -name config", `component is used by configuration "project1"`],
        ["delver -name code -version v9", `no version "v9" for component "code" found`],
        ["changeconf -name project1 -component code -version v9", `no version "v9" for component "code" found`],
        [`addver -name a:b -version v -hash ${sha256("x")}`, "name cannot contain : symbol"],
        ["addver -name a -version v -hash 00", "hash should be a hex representation of content sha256 sum, 64 chars long"],
        ["addver -name a", "name, version and hash should all be set"],
        ["rollback -name project1", `configuration "project1" has no earlier state to roll back to`],
        ["history -name nope", `configuration "nope" not found`],
        ["showconf -name 'unterminated", "unterminated single quote"]
      ]
      for (const [line, message] of cases) expect(yield* failRun(line)).toBe(`${message}\n`)
      expect(yield* failRun("frobnicate -x")).toBe(`unknown command "frobnicate"\n${commandList()}`)
      expect(yield* snapshot).toEqual(before)
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("deletes with -force and when unused", () =>
    Effect.gen(function* () {
      yield* fixture
      yield* okRun("delver -name code -version v02")
      expect(yield* okRun("showcomp -name code")).toBe("2017-03-01T11:23:36Z   v01\n")
      yield* okRun("delconf -name project1 -force")
      expect(yield* okRun("configurations")).toBe("")
      yield* okRun("delcomp -name config")
      expect(yield* okRun("components")).toBe("code\n")
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("verify as a console command", () =>
    Effect.gen(function* () {
      yield* fixture
      expect(yield* okRun("verify")).toBe("ok: 3 blobs, 3 versions, 1 configurations checked\n")
    }).pipe(Effect.provide(TestCore()))
  )

  it.scoped("never fails: random lines give exit 0 or 1 and newline-terminated output", () =>
    Effect.gen(function* () {
      yield* fixture
      const words = fc.constantFrom(
        "showconf", "showcomp", "addconf", "bumpconf", "delconf", "history", "rollback", "components", "-name", "project1",
        "code", "-layer", "code:v01", "-v", "-json", "-force", "--", "'", '"', "-h", "x=y"
      )
      const lines = fc.oneof(fc.string(), fc.array(words, { maxLength: 6 }).map((ws) => ws.join(" ")))
      const samples = fc.sample(lines, 300)
      for (const line of samples) {
        const r = yield* run(line)
        expect([0, 1]).toContain(r.exitCode)
        if (r.output !== "") expect(r.output.endsWith("\n"), line).toBe(true)
      }
    }).pipe(Effect.provide(TestCore()))
  )

  it.effect("a defect becomes 'internal error' without details", () =>
    Effect.gen(function* () {
      const c = yield* CommandInterpreter
      const r = yield* c.run("components", alice)
      expect(r).toEqual({ output: "internal error\n", exitCode: 1 })
    }).pipe(
      Effect.provide(
        CommandInterpreterLive.pipe(
          Layer.provide(
            Layer.mergeAll(
              Layer.mock(Storage, { generation: () => undefined, componentNames: Effect.die(new Error("/var/lib/secret/state.db is on fire")) }),
              Layer.mock(BlobStore, { local: () => Effect.succeed("") }),
              Layer.mock(Uploads, {}),
              Layer.mock(LayerVerdicts, {}),
              SignaturesNone,
              Layer.mock(HostStatus, {}),
              Layer.mock(Rollouts, { live: () => false, summary: () => undefined })
            )
          )
        )
      ),
      Logger.withMinimumLogLevel(LogLevel.None)
    )
  )
})

/** The real core, except that adopting a blob fails after `before` ran (a full disk, a racing sweep, a crash). */
const failingAdopt = (before: (staged: string, real: BlobStore["Type"]) => Effect.Effect<unknown, unknown>) =>
  Layer.unwrapScoped(
    Effect.map(tempDirScoped(), (dir) => {
      const core = coreLayer(dir)
      const failingBlobs = Layer.effect(
        BlobStore,
        Effect.map(BlobStore, (real) =>
          BlobStore.of({
            ...real,
            adopt: (staged) =>
              before(staged, real).pipe(Effect.orDie, Effect.zipRight(Effect.fail(new StorageError({ reason: "cannot store a blob" }))))
          })
        )
      ).pipe(Layer.provide(core))
      // Later layers win in a merge; fresh, or the memoized console of `core` would be reused.
      return Layer.merge(core, Layer.fresh(CommandInterpreterLive).pipe(Layer.provide(Layer.merge(core, failingBlobs))))
    })
  )

describe("addver ordering (fault 1)", () => {
  it.scoped("dying after the blob moved and before the commit leaves a harmless blob; a retry records the version", () =>
    Effect.gen(function* () {
      const h = yield* stageUpload("payload")
      const r = yield* run(`addver -name code -version v1 -hash ${h}`)
      expect(r).toEqual({ output: "internal error\n", exitCode: 1 })
      expect((yield* dumpTables).versions).toEqual([]) // rolled back: no version without its blob
      expect(yield* (yield* BlobStore).has(h)).toBe(true)
      expect((yield* run("verify")).exitCode).toBe(0)
      expect(yield* run(`addver -name code -version v1 -hash ${h}`)).toEqual({ output: "", exitCode: 0 })
      expect((yield* run("showcomp -name code")).output).toMatch(/ v1\n$/)
    }).pipe(
      Logger.withMinimumLogLevel(LogLevel.None),
      Effect.provide(failingAdopt((staged, real) => Effect.zipRight(real.adopt(staged, sha256(layerOf("payload"))), Effect.die("crash"))))
    )
  )

  it.scoped("when moving the blob fails, no version is recorded and the upload stays", () =>
    Effect.gen(function* () {
      const h = yield* stageUpload("payload")
      const r = yield* run(`addver -name code -version v1 -hash ${h}`)
      expect(r).toEqual({ output: "internal error: cannot store a blob\n", exitCode: 1 })
      expect((yield* dumpTables).versions).toEqual([])
      expect(yield* (yield* Uploads).find(h)).toBeTruthy()
    }).pipe(Effect.provide(failingAdopt(() => Effect.void)))
  )

  it.scoped("an upload swept away while addver runs is reported as not found", () =>
    Effect.gen(function* () {
      const h = yield* stageUpload("payload")
      const r = yield* run(`addver -name code -version v1 -hash ${h}`)
      expect(r).toEqual({ output: "no uploaded file with given hash found\n", exitCode: 1 })
      expect((yield* dumpTables).versions).toEqual([])
    }).pipe(Effect.provide(failingAdopt((staged) => Effect.promise(() => unlink(staged)))))
  )
})
