import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, TestClock } from "effect"
import * as path from "node:path"
import { configHash } from "../../src/domain/ConfigHash.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../../src/domain/Names.js"
import { SqlLive } from "../../src/registry/Sql.js"
import { Storage, StorageLive } from "../../src/registry/Storage.js"
import { alice, bob, dumpTables, tempDirScoped } from "../support/layers.js"
import { testDialects } from "../support/postgres.js"

const dialects = testDialects({ migrated: true })
const onFile = (dir: string) => StorageLive.pipe(Layer.provideMerge(SqlLive(dir)))

const c = (s: string) => s as ComponentName
const v = (s: string) => s as Version
const p = (s: string) => s as ConfigurationName
const h = (n: number) => n.toString(16).padStart(64, "0") as Sha256
const layer = (component: string, version: string) => ({ component: c(component), version: v(version) })

/** code v01..v03 (hashes 1..3), config v01 (hash 11). */
const seed = Effect.gen(function* () {
  const s = yield* Storage
  for (const [i, name] of ["v01", "v02", "v03"].entries()) {
    yield* s.addVersion(c("code"), v(name), h(i + 1))
    yield* TestClock.adjust("1 second")
  }
  yield* s.addVersion(c("config"), v("v01"), h(11))
  return s
})

describe.each(dialects)("Storage on $dialect", ({ skip, sql }) => {
  // A fresh database per test: SQLite in memory, or a new PostgreSQL database.
  const Mem = StorageLive.pipe(Layer.provideMerge(sql))
  if (skip !== undefined) return void it.skip(skip, () => {})
  it.effect("records versions, oldest first, and refuses duplicates", () =>
    Effect.gen(function* () {
      const s = yield* seed
      const vs = yield* s.versions("code")
      expect(vs.map((x) => x.version)).toEqual(["v01", "v02", "v03"])
      expect(vs.map((x) => x.ctime.toISOString())).toEqual(["1970-01-01T00:00:00.000Z", "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z"])
      const dup = yield* Effect.flip(s.addVersion(c("code"), v("v02"), h(9)))
      expect(dup._tag).toBe("VersionExists")
      expect(yield* s.componentNames).toEqual(["code", "config"])
      expect((yield* Effect.flip(s.versions("nope")))._tag).toBe("ComponentNotFound")
    }).pipe(Effect.provide(Mem))
  )

  it.effect("keeps every state, newest first, with its author; the document follows the current one", () =>
    Effect.gen(function* () {
      const s = yield* seed
      const first = yield* s.addConfiguration(p("web"), [layer("code", "v01"), layer("config", "v01")], alice)
      expect(first.hash).toBe(configHash([h(1), h(11)]))
      yield* TestClock.adjust("1 minute")
      const ch = yield* s.changeConfiguration(p("web"), c("code"), v("v02"), bob)
      expect(ch.changed).toBe(true)
      const hist = yield* s.history("web")
      expect(hist.map((x) => x.hash)).toEqual([configHash([h(2), h(11)]), configHash([h(1), h(11)])])
      expect(hist.map((x) => x.who.label)).toEqual(["SHA256:bobFingerprint", "SHA256:aliceFingerprint alice@laptop"])
      expect(hist[0]!.layers.map((l) => `${l.component}:${l.version}`)).toEqual(["code:v02", "config:v01"])
      const doc = Option.getOrThrow(yield* s.document("web"))
      expect(doc.Hash).toBe(hist[0]!.hash)
      expect(doc.Mtime.toISOString()).toBe("1970-01-01T00:01:03.000Z")
      expect(doc.Layers.map((l) => [l.Name, l.Version, l.File])).toEqual([
        ["code", "v02", `files/${h(2)}`],
        ["config", "v01", `files/${h(11)}`]
      ])
      expect(Option.isNone(yield* s.document("nope"))).toBe(true)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("refuses invalid configurations and changes nothing", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("web"), [layer("code", "v01")], alice)
      const before = yield* dumpTables
      const errors = yield* Effect.all([
        Effect.flip(s.addConfiguration(p("web"), [layer("code", "v02")], alice)),
        Effect.flip(s.addConfiguration(p("x"), [layer("code", "v01"), layer("code", "v02")], alice)),
        Effect.flip(s.addConfiguration(p("x"), [layer("code", "v01"), layer("config", "v9")], alice)),
        Effect.flip(s.changeConfiguration(p("web"), c("code"), v("v9"), alice)),
        Effect.flip(s.changeConfiguration(p("web"), c("config"), v("v01"), alice)),
        Effect.flip(s.changeConfiguration(p("nope"), c("code"), v("v01"), alice)),
        Effect.flip(s.replaceConfiguration(p("web"), [layer("config", "v01"), layer("code", "v7")], alice)),
        Effect.flip(s.bumpConfiguration(p("web"), c("code"), alice, h(999)))
      ])
      expect(errors.map((e) => e.message)).toEqual([
        `configuration "web" already exists, use replaceconf to change it`,
        `component "code" is used more than once`,
        `no version "v9" for component "config" found`,
        `no version "v9" for component "code" found`,
        `configuration "web" has no layer of component "config"`,
        `configuration "nope" not found`,
        `no version "v7" for component "code" found`,
        `configuration "web" has hash ${configHash([h(1)])}, not the expected ${h(999)}; nothing changed`
      ])
      expect(yield* dumpTables).toEqual(before)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("bumpconf to the version in place writes nothing (fault 8); a real bump does", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("web"), [layer("code", "v03")], alice)
      const before = yield* dumpTables
      const same = yield* s.bumpConfiguration(p("web"), c("code"), alice)
      expect(same.changed).toBe(false)
      expect(yield* dumpTables).toEqual(before)
      yield* s.changeConfiguration(p("web"), c("code"), v("v01"), alice)
      const bumped = yield* s.bumpConfiguration(p("web"), c("code"), alice)
      expect(bumped.changed).toBe(true)
      expect(bumped.before.layers[0]!.version).toBe("v01")
      expect(bumped.after.layers[0]!.version).toBe("v03")
      expect((yield* s.history("web")).length).toBe(3)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("rollback returns to the previous (or named) state as a new state", () =>
    Effect.gen(function* () {
      const s = yield* seed
      const s1 = yield* s.addConfiguration(p("web"), [layer("code", "v01")], alice)
      const s2 = (yield* s.changeConfiguration(p("web"), c("code"), v("v02"), alice)).after
      const s3 = (yield* s.changeConfiguration(p("web"), c("code"), v("v03"), alice)).after
      const back = yield* s.rollback(p("web"), undefined, bob)
      expect(back.after.hash).toBe(s2.hash)
      expect(back.after.who.user).toBe("bob")
      // a second rollback toggles back to the state just left
      expect((yield* s.rollback(p("web"), undefined, bob)).after.hash).toBe(s3.hash)
      expect((yield* s.rollback(p("web"), s1.hash, bob)).after.hash).toBe(s1.hash)
      const again = yield* s.rollback(p("web"), s1.hash, bob)
      expect(again.changed).toBe(false)
      expect((yield* s.history("web")).map((x) => x.hash)).toEqual([s1.hash, s3.hash, s2.hash, s3.hash, s2.hash, s1.hash])
      const never = yield* Effect.flip(s.rollback(p("web"), h(12345), bob))
      expect(never.message).toBe(`configuration "web" never had hash ${h(12345)}`)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("rollback names a version that retention removed, and changes nothing", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("web"), [layer("code", "v01")], alice)
      yield* s.changeConfiguration(p("web"), c("code"), v("v03"), alice)
      expect((yield* s.pruneVersions(1)).map((x) => x.version)).toEqual(["v01", "v02"])
      const before = yield* dumpTables
      const e = yield* Effect.flip(s.rollback(p("web"), undefined, alice))
      expect(e.message).toMatch(/version "v01" of component "code" has been removed/)
      expect(yield* dumpTables).toEqual(before)
      // the same name uploaded again with other content is refused too
      yield* s.addVersion(c("code"), v("v01"), h(77))
      expect((yield* Effect.flip(s.rollback(p("web"), undefined, alice))).message).toMatch(/now has different content/)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("rollback without an earlier state fails clearly", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("web"), [layer("code", "v01")], alice)
      expect((yield* Effect.flip(s.rollback(p("web"), undefined, alice))).message).toBe(
        `configuration "web" has no earlier state to roll back to`
      )
    }).pipe(Effect.provide(Mem))
  )

  it.effect("retention keeps the N newest per component plus versions in current use", () =>
    Effect.gen(function* () {
      const s = yield* seed
      for (const n of ["v04", "v05"]) yield* s.addVersion(c("code"), v(n), h(Number(n.slice(1)) + 100))
      yield* s.addConfiguration(p("old"), [layer("code", "v01")], alice)
      yield* s.addConfiguration(p("mid"), [layer("code", "v02")], alice)
      yield* s.changeConfiguration(p("mid"), c("code"), v("v05"), alice) // v02 now only in history
      const removed = yield* s.pruneVersions(2)
      expect(removed.map((x) => `${x.component}:${x.version}`)).toEqual(["code:v02", "code:v03"])
      expect((yield* s.versions("code")).map((x) => x.version)).toEqual(["v01", "v04", "v05"])
      expect((yield* s.versions("config")).map((x) => x.version)).toEqual(["v01"])
    }).pipe(Effect.provide(Mem))
  )

  it.effect("delete refuses versions and components in use; delconf starts a fresh history", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("project1"), [layer("code", "v01")], alice)
      expect((yield* Effect.flip(s.deleteVersion("code", "v01"))).message).toBe(`version is used by configuration "project1"`)
      expect((yield* Effect.flip(s.deleteComponent("code"))).message).toBe(`component is used by configuration "project1"`)
      expect((yield* Effect.flip(s.deleteVersion("code", "v9"))).message).toBe(`no version "v9" for component "code" found`)
      yield* s.deleteVersion("code", "v02")
      yield* s.deleteComponent("config")
      expect(yield* s.componentNames).toEqual(["code"])
      yield* s.deleteConfiguration("project1")
      expect((yield* Effect.flip(s.deleteConfiguration("project1")))._tag).toBe("ConfigurationNotFound")
      expect((yield* Effect.flip(s.history("project1")))._tag).toBe("ConfigurationNotFound")
      yield* s.addConfiguration(p("project1"), [layer("code", "v03")], alice)
      expect((yield* s.history("project1")).length).toBe(1)
      expect((yield* s.allStates).length).toBe(2) // append-only: the old state is still recorded
    }).pipe(Effect.provide(Mem))
  )

  it.effect("lists configurations in byte order, not locale order", () =>
    Effect.gen(function* () {
      const s = yield* seed
      for (const n of ["b", "B", "a", "é", "Z", "_"]) yield* s.addConfiguration(p(n), [layer("code", "v01")], alice)
      const names = yield* s.configurationNames
      expect(names).toEqual([...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))))
      expect(names).toEqual(["B", "Z", "_", "a", "b", "é"])
    }).pipe(Effect.provide(Mem))
  )

  it.effect("20 concurrent operators with -expect: exactly the non-conflicting ones succeed", () =>
    Effect.gen(function* () {
      const s = yield* Storage
      for (let i = 0; i < 20; i++) yield* s.addVersion(c("code"), v(`v${i}`), h(i + 1))
      const start = yield* s.addConfiguration(p("shared"), [layer("code", "v0")], alice)
      for (let i = 0; i < 20; i++) yield* s.addConfiguration(p(`own${i}`), [layer("code", "v0")], alice)
      // all 20 expect the same hash on one configuration: one wins, 19 are stale
      const shared = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => Effect.either(s.changeConfiguration(p("shared"), c("code"), v(`v${i}`), alice, start.hash))),
        { concurrency: "unbounded" }
      )
      const won = shared.filter(Either.isRight)
      // v0 is a no-op success that does not move the hash; any other one moves it
      expect(shared.filter(Either.isLeft).every((e) => e.left._tag === "StaleExpect")).toBe(true)
      const movers = won.filter((r) => r.right.changed)
      expect(movers.length).toBe(1)
      expect(won.length).toBeLessThanOrEqual(2)
      expect((yield* s.history("shared")).length).toBe(2)
      // each on its own configuration: no conflicts, all succeed
      const own = yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => Effect.either(s.changeConfiguration(p(`own${i}`), c("code"), v("v5"), alice, start.hash))),
        { concurrency: "unbounded" }
      )
      expect(own.every(Either.isRight)).toBe(true)
    }).pipe(Effect.provide(Mem))
  )

  it.effect("history of a long-lived configuration (more states than one query's parameters)", () =>
    Effect.gen(function* () {
      const s = yield* seed
      yield* s.addConfiguration(p("web"), [layer("code", "v01")], alice)
      for (let i = 0; i < 520; i++) yield* s.changeConfiguration(p("web"), c("code"), v(i % 2 === 0 ? "v02" : "v01"), alice)
      const hist = yield* s.history("web")
      expect(hist.length).toBe(521)
      expect(hist.every((st) => st.layers.length === 1)).toBe(true)
      expect(hist[0]!.layers[0]!.version).toBe("v01") // the 520th change, back to v01
      expect((yield* s.allStates).length).toBe(521)
    }).pipe(Effect.provide(Mem))
  )

})

describe("Storage on a SQLite file", () => {
  it.scoped("a file database keeps everything across a reopen", () =>
    Effect.gen(function* () {
      const dir = path.join(yield* tempDirScoped(), "not", "yet") // created on open (fault 11)
      const written = yield* Effect.gen(function* () {
        const s = yield* seed
        yield* s.addConfiguration(p("web"), [layer("code", "v01"), layer("config", "v01")], alice)
        yield* s.bumpConfiguration(p("web"), c("code"), bob)
        const sql = yield* SqlClient.SqlClient
        const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
        expect(mode!.journal_mode).toBe("wal")
        return yield* dumpTables
      }).pipe(Effect.provide(onFile(dir)))
      const reread = yield* Effect.gen(function* () {
        const s = yield* Storage
        expect((yield* s.history("web")).map((x) => x.who.user)).toEqual(["bob", "alice"])
        return yield* dumpTables
      }).pipe(Effect.provide(onFile(dir)))
      expect(reread).toEqual(written)
      expect(written.states!.length).toBe(2)
    })
  )
})
