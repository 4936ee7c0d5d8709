// Read-only commands answered from the interpreter's cache (kept per Storage.generation) must never show
// what a committed change replaced: on SQLite (the only writer is this process) after every kind of change,
// whoever made it (a command, Storage directly, retention), also with a read in flight across the change;
// on PostgreSQL nothing is kept (other replicas write). And over SSH, where a cached answer needs no fiber.
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, FastCheck as fc, Fiber, Layer } from "effect"
import { afterAll, beforeAll } from "vitest"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../../src/domain/Names.js"
import { CommandInterpreter, make as makeInterpreter } from "../../src/registry/CommandInterpreter.js"
import { Storage, StorageLive } from "../../src/registry/Storage.js"
import { testDialects } from "../support/postgres.js"
import { alice, coreLayer, layerOf, run, sha256, tempDirScoped } from "../support/layers.js"
import { type TestRegistry, sftp, ssh, startRegistry, tempDir } from "../support/registry.js"
import { rm, writeFile } from "node:fs/promises"
import * as path from "node:path"

const c = (s: string) => s as ComponentName
const v = (s: string) => s as Version
const p = (s: string) => s as ConfigurationName
const h = (n: number) => n.toString(16).padStart(64, "0") as Sha256

const output = (line: string) => Effect.map(run(line), (r) => r.output)
const lines = (xs: ReadonlyArray<string>) => xs.map((x) => `${x}\n`).join("")

describe.each(testDialects())("Storage.generation on $dialect", ({ dialect, skip, sql }) => {
  if (skip !== undefined) return void it.skip(skip, () => {})
  it.effect(dialect === "sqlite" ? "moves across every change and is undefined while one runs" : "is always undefined (other replicas write)", () =>
    Effect.gen(function* () {
      const s = yield* Storage
      const before = s.generation()
      const inside = yield* s.transaction(Effect.sync(() => s.generation()))
      yield* s.addVersion(c("code"), v("v1"), h(1))
      const after = s.generation()
      // A change that fails (rolled back) still moves it: whoever read meanwhile read inside it.
      yield* Effect.flip(s.addVersion(c("code"), v("v1"), h(2)))
      const afterFailed = s.generation()
      if (dialect === "sqlite") {
        expect(before).toBeTypeOf("number")
        expect(inside).toBeUndefined()
        expect(after).toBeTypeOf("number")
        expect(after).not.toBe(before)
        expect(afterFailed).not.toBe(after)
      } else {
        expect([before, inside, after, afterFailed]).toEqual([undefined, undefined, undefined, undefined])
      }
    }).pipe(Effect.provide(StorageLive.pipe(Layer.provideMerge(sql))))
  )
})

describe("Storage.generation on SQLite", () => {
  // Each change method on its own: the random sequences below reach some only now and then (a pruneVersions
  // outside `transaction` passed them 2 times in 3).
  it.effect("moves across each kind of change, retention's included", () =>
    Effect.gen(function* () {
      const s = yield* Storage
      const moves = (what: string, change: Effect.Effect<unknown, unknown>) =>
        Effect.gen(function* () {
          const before = s.generation()
          yield* Effect.ignore(change)
          expect(s.generation(), what).toBeTypeOf("number")
          expect(s.generation(), what).not.toBe(before)
        })
      yield* moves("addVersion", s.addVersion(c("a"), v("v1"), h(1)))
      yield* s.addVersion(c("a"), v("v2"), h(2))
      yield* s.addVersion(c("b"), v("v1"), h(3))
      yield* moves("addConfiguration", s.addConfiguration(p("x"), [{ component: c("a"), version: v("v2") }], alice))
      yield* moves("changeConfiguration", s.changeConfiguration(p("x"), c("a"), v("v1"), alice))
      yield* moves("bumpConfiguration", s.bumpConfiguration(p("x"), c("a"), alice))
      yield* moves("replaceConfiguration", s.replaceConfiguration(p("x"), [{ component: c("a"), version: v("v2") }, { component: c("b"), version: v("v1") }], alice))
      yield* moves("rollback", s.rollback(p("x"), undefined, alice))
      yield* s.addVersion(c("a"), v("v3"), h(4))
      yield* moves("pruneVersions", s.pruneVersions(1))
      yield* moves("deleteVersion", s.deleteVersion(c("b"), v("v1")))
      yield* moves("deleteComponent", s.deleteComponent(c("b")))
      yield* moves("deleteConfiguration", s.deleteConfiguration(p("x")))
    }).pipe(Effect.provide(Layer.unwrapScoped(Effect.map(tempDirScoped(), (dir) => coreLayer(dir, { db: "file" })))))
  )
})

describe("the interpreter's cached answers", () => {
  type Op =
    | { readonly _tag: "addver"; readonly component: string; readonly version: string }
    | { readonly _tag: "delver"; readonly component: string; readonly version: string }
    | { readonly _tag: "delcomp"; readonly component: string }
    | { readonly _tag: "addconf"; readonly name: string; readonly component: string }
    | { readonly _tag: "delconf"; readonly name: string }
    | { readonly _tag: "prune" }
    | { readonly _tag: "read"; readonly line: string }
  const comp = fc.constantFrom("a", "b", "c")
  const ver = fc.constantFrom("v1", "v2", "v3")
  const conf = fc.constantFrom("x", "y")
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ _tag: fc.constant("addver" as const), component: comp, version: ver }),
    fc.record({ _tag: fc.constant("delver" as const), component: comp, version: ver }),
    fc.record({ _tag: fc.constant("delcomp" as const), component: comp }),
    fc.record({ _tag: fc.constant("addconf" as const), name: conf, component: comp }),
    fc.record({ _tag: fc.constant("delconf" as const), name: conf }),
    fc.constant({ _tag: "prune" as const }),
    fc.record({
      _tag: fc.constant("read" as const),
      line: fc.constantFrom("configurations", "components", "configurations -json", "components -json", "showcomp -json -name a", "showcomp -name b -json")
    })
  )

  /** What a read shows, read from Storage itself (never cached). */
  const fresh = (s: Storage["Type"], line: string) =>
    Effect.gen(function* () {
      if (line.startsWith("configurations")) return yield* s.configurationNames
      if (line.startsWith("components")) return yield* s.componentNames
      const name = line.includes(" a") ? "a" : "b"
      return yield* Effect.match(s.versions(name), { onFailure: () => "none", onSuccess: (vs) => vs.map((x) => `${x.version}=${x.hash}`) })
    })
  /** The same, from the interpreter's answer. */
  const shown = (line: string) =>
    Effect.map(run(line), (r) => {
      if (line.startsWith("showcomp")) {
        if (r.exitCode !== 0) return "none"
        return (JSON.parse(r.output) as { Versions: Array<{ Version: string; Hash: string }> }).Versions.map((x) => `${x.Version}=${x.Hash}`)
      }
      return line.endsWith("-json") ? (JSON.parse(r.output) as Array<string>) : r.output.split("\n").filter((l) => l !== "")
    })

  it.effect("show every change made since, by a command, by Storage itself or by retention (random sequences)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDirScoped()
      let n = 0
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), (ops) =>
            Effect.runPromise(
              Effect.gen(function* () {
                const s = yield* Storage
                for (const o of ops) {
                  switch (o._tag) {
                    case "addver":
                      yield* Effect.ignore(s.addVersion(c(o.component), v(o.version), h(++n)))
                      break
                    case "delver": // through the interpreter, as an operator would
                      yield* run(`delver -name ${o.component} -version ${o.version}`)
                      break
                    case "delcomp":
                      yield* Effect.ignore(s.deleteComponent(o.component))
                      break
                    case "addconf": {
                      const vs = yield* Effect.orElseSucceed(s.versions(o.component), () => [])
                      const layers = vs.length === 0 ? "" : ` -layer ${o.component}:${vs.at(-1)!.version}`
                      yield* run(`addconf -name ${o.name}${layers}`)
                      break
                    }
                    case "delconf":
                      yield* Effect.ignore(s.deleteConfiguration(o.name))
                      break
                    case "prune": // what the janitor's retention does, outside the interpreter
                      yield* s.pruneVersions(1)
                      break
                    case "read":
                      expect(yield* shown(o.line), o.line).toEqual(yield* fresh(s, o.line))
                  }
                  // Every read, after every step: the cached answers included.
                  for (const line of ["configurations", "components", "showcomp -json -name a", "showcomp -json -name b"]) {
                    expect(yield* shown(line), line).toEqual(yield* fresh(s, line))
                  }
                }
              }).pipe(Effect.provide(coreLayer(`${dir}/${++n}`, { db: "file" })))
            )
          ),
          { numRuns: 40 }
        )
      )
    }).pipe(Effect.scoped), 120_000
  )

  it.effect("are answered at once, as an Exit, and only after the same read ran", () =>
    Effect.gen(function* () {
      yield* (yield* Storage).addVersion(c("a"), v("v1"), h(1))
      const interpreter = yield* CommandInterpreter
      expect(Exit.isExit(interpreter.run("configurations", alice))).toBe(false)
      expect(yield* output("configurations")).toBe("")
      const again = interpreter.run("configurations", alice)
      expect(Exit.isExit(again) && Exit.isSuccess(again) ? again.value : undefined).toEqual({ output: "", exitCode: 0 })
      // Not for commands whose answers change outside Storage's changes, nor for changes.
      for (const line of ["status", "history -name x", "showconf -name x", "addconf -name x -layer a:v1"]) {
        yield* run(line)
        expect(Exit.isExit(interpreter.run(line, alice)), line).toBe(false)
      }
      expect(yield* output("configurations")).toBe(lines(["x"]))
    }).pipe(Effect.provide(Layer.unwrapScoped(Effect.map(tempDirScoped(), (dir) => coreLayer(dir, { db: "file" })))))
  )

  it.effect("do not keep an answer read before a change that committed while it was read", () =>
    Effect.gen(function* () {
      const s = yield* Storage
      // An interpreter whose configuration names are read through a Storage that can hold a read after the query.
      let gate: Deferred.Deferred<void> | undefined
      const held = yield* Deferred.make<void>()
      const holding = Storage.of({
        ...s,
        configurationNames: Effect.tap(s.configurationNames, () =>
          gate === undefined ? Effect.void : Effect.zipRight(Deferred.succeed(held, undefined), Deferred.await(gate))
        )
      })
      const interpreter = yield* Effect.provideService(makeInterpreter, Storage, holding)
      const names = (line = "configurations") => Effect.map(interpreter.run(line, alice), (r) => r.output)
      gate = yield* Deferred.make<void>()
      const reading = yield* Effect.fork(names())
      yield* Deferred.await(held)
      yield* s.addConfiguration(p("new"), [], alice) // commits while the read is held
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(reading)).toBe("") // what it read, before the change
      gate = undefined
      expect(yield* names()).toBe(lines(["new"]))
      expect(yield* names()).toBe(lines(["new"]))
    }).pipe(Effect.provide(Layer.unwrapScoped(Effect.map(tempDirScoped(), (dir) => coreLayer(dir, { db: "file" })))))
  )
})

describe("over SSH (the built registry)", () => {
  let reg: TestRegistry
  beforeAll(async () => {
    reg = await startRegistry()
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (reg) await rm(reg.dir, { recursive: true, force: true })
  })

  it("a cached answer follows a change made on another connection", async () => {
    const exec = async (line: string) => {
      const r = await ssh(reg, [line])
      expect(r.code, `${line}: ${r.stderr}`).toBe(0)
      return r.stdout
    }
    const work = await tempDir("cache-ssh-")
    await writeFile(path.join(work, "code.tar.gz"), layerOf("v1\n"))
    expect((await sftp(reg, "127.0.0.1", { input: "put code.tar.gz\n", cwd: work })).code).toBe(0)
    await rm(work, { recursive: true, force: true })
    expect(await exec("components")).toBe("")
    expect(await exec("components")).toBe("") // answered from the cache
    await exec(`addver -name code -version v1 -hash ${sha256(layerOf("v1\n"))}`)
    expect(await exec("components")).toBe("code\n")
    expect(await exec("configurations")).toBe("")
    expect(await exec("configurations")).toBe("")
    await exec("addconf -name web -layer code:v1")
    expect(await exec("configurations")).toBe("web\n")
    await exec("delconf -name web -force")
    expect(await exec("configurations")).toBe("")
    expect(await exec("help")).toBe(await exec("help"))
  }, 60_000)
})
