// The cycle's decisions on test Layers (fake registry and script, real cache/unpacker/state on a
// temp dir), and the loop's schedule on the TestClock.
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Deferred, Duration, Effect, Exit, Fiber, Queue, Schema, TestClock } from "effect"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterEach } from "vitest"
import { agentSchedule, cycle, loop, once, passThrough } from "../../src/agent/Agent.js"
import { CycleResult, outcomeOf } from "../../src/domain/DeployOutcome.js"
import { listAll } from "./fixtures.js"
import { blob, type FakeRegistry, type FakeScript, makeFakeRegistry, makeFakeScript, publish, settings, tempDir, testLayer } from "./support.js"
import type { AgentSettings } from "../../src/agent/AgentConfig.js"

const dirs: Array<string> = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const code1 = blob("code", "v01", [{ path: "app/main.js", content: "v1" }])
const code2 = blob("code", "v02", [{ path: "app/main.js", content: "v2" }])
const config1 = blob("config", "v01", [{ path: "config.txt", content: "c1" }])

interface World {
  dir: string
  cfg: AgentSettings
  reg: FakeRegistry
  script: FakeScript
  lines: Array<string>
  run: <A, E>(eff: Effect.Effect<A, E, any>) => Effect.Effect<A, E>
}

const world = (overrides: Partial<AgentSettings> = {}) =>
  Effect.gen(function* () {
    const dir = yield* Effect.promise(() => tempDir("agent-cycle-"))
    dirs.push(dir)
    const cfg = settings(dir, overrides)
    const reg = yield* makeFakeRegistry
    const script = yield* makeFakeScript
    const lines: Array<string> = []
    const layer = testLayer(cfg, reg, script, lines)
    const run = <A, E>(eff: Effect.Effect<A, E, any>) => Effect.provide(eff, layer) as Effect.Effect<A, E>
    return { dir, cfg, reg, script, lines, run } satisfies World
  })

const cachedBlobs = (w: World) =>
  Effect.promise(async () => (await fs.readdir(path.join(w.dir, "cache"))).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort())
const stateOf = (w: World) => Effect.promise(() => fs.readFile(w.cfg.state, "utf8").catch(() => undefined))
const tmpFiles = (w: World) => Effect.promise(async () => (await listAll(w.dir)).filter((p) => p.endsWith(".part") || p.startsWith("tmp/") || p.endsWith(".tmp")))

describe("cycle", () => {
  it.effect("first deploy: downloads, unpacks, runs the script with OLDROOT empty, then writes the state", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const hash = publish(w.reg, "project1", [code1, config1])
      const result = yield* w.run(cycle)
      expect(result).toEqual({ _tag: "Deployed", hash, previous: undefined })
      expect(w.reg.downloads.sort()).toEqual([code1.hash, config1.hash].sort())
      const root = path.join(w.dir, "unpacked", hash)
      expect(yield* Effect.promise(() => fs.readFile(path.join(root, "app/main.js"), "utf8"))).toBe("v1")
      expect(existsSync(`${root}.ok`)).toBe(true)
      expect(w.script.runs).toHaveLength(1)
      const env = w.script.runs[0]!.env
      // Exactly these variables (fault 3: OLDROOT empty on the first deploy).
      const expected = new Set(["OLDID", "OLDROOT", "NEWID", "NEWROOT", "STATEFILE", "LAYER_0_NAME", "LAYER_0_VERSION", "LAYER_1_NAME", "LAYER_1_VERSION"])
      for (const k of passThrough) if (process.env[k] !== undefined) expected.add(k)
      expect(new Set(Object.keys(env))).toEqual(expected)
      expect(env).toMatchObject({ OLDID: "", OLDROOT: "", NEWID: hash, NEWROOT: root, LAYER_0_NAME: "code", LAYER_0_VERSION: "v01", LAYER_1_NAME: "config" })
      expect(JSON.parse(w.script.runs[0]!.stateFileContent).Hash).toBe(hash)
      expect(JSON.parse((yield* stateOf(w))!).Hash).toBe(hash)
      expect(yield* tmpFiles(w)).toEqual([]) // STATEFILE removed after the run
    }))

  it.effect("no change: nothing downloaded, script not run", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const hash = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      const again = yield* w.run(cycle)
      expect(again).toEqual({ _tag: "Unchanged", hash })
      expect(w.reg.downloads).toHaveLength(1)
      expect(w.script.runs).toHaveLength(1)
    }))

  it.effect("update: a layer shared with the previous version is not downloaded again; OLD* point at the previous tree", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const h1 = publish(w.reg, "project1", [code1, config1])
      yield* w.run(cycle)
      const h2 = publish(w.reg, "project1", [code2, config1])
      const result = yield* w.run(cycle)
      expect(result).toEqual({ _tag: "Deployed", hash: h2, previous: h1 })
      expect(w.reg.downloads.filter((h) => h === config1.hash)).toHaveLength(1)
      expect(w.reg.downloads.filter((h) => h === code2.hash)).toHaveLength(1)
      const env = w.script.runs[1]!.env
      expect(env).toMatchObject({ OLDID: h1, OLDROOT: path.join(w.dir, "unpacked", h1), NEWID: h2, LAYER_0_VERSION: "v02" })
      // Without -cleanold both trees stay; the cache keeps the current and the previous layers.
      expect(existsSync(path.join(w.dir, "unpacked", h1))).toBe(true)
      expect(yield* cachedBlobs(w)).toEqual([code1.hash, code2.hash, config1.hash].sort())
    }))

  it.effect("rollback to the previous configuration downloads nothing; blobs of older ones go", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const h1 = publish(w.reg, "project1", [code1, config1])
      yield* w.run(cycle)
      publish(w.reg, "project1", [code2, config1])
      yield* w.run(cycle)
      const downloads = w.reg.downloads.length
      expect(publish(w.reg, "project1", [code1, config1])).toBe(h1) // the registry's rollback
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Deployed", hash: h1 })
      expect(w.reg.downloads).toHaveLength(downloads)
      // ...and a roll forward again is free too: code2 is now the previous configuration's
      publish(w.reg, "project1", [code2, config1])
      yield* w.run(cycle)
      expect(w.reg.downloads).toHaveLength(downloads)
      // a third configuration: code1 was used by neither the current nor the previous one
      publish(w.reg, "project1", [config1])
      yield* w.run(cycle)
      expect(yield* cachedBlobs(w)).toEqual([code2.hash, config1.hash].sort())
    }))

  it.effect("an unchanged configuration still cleans the cache, keeping the previous configuration's blobs", () =>
    Effect.gen(function* () {
      const w = yield* world()
      publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      publish(w.reg, "project1", [code2])
      yield* w.run(cycle)
      // what a crash between the state write and the cleanup leaves: a blob neither configuration uses
      yield* Effect.promise(() => fs.writeFile(path.join(w.dir, "cache", config1.hash), config1.bytes))
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Unchanged" })
      expect(yield* cachedBlobs(w)).toEqual([code1.hash, code2.hash].sort())
    }))

  it.effect("-cleanold removes other trees (.ok first) but never the current one", () =>
    Effect.gen(function* () {
      const w = yield* world({ cleanOld: true })
      const h1 = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      const h2 = publish(w.reg, "project1", [code2])
      yield* w.run(cycle)
      expect((yield* Effect.promise(() => fs.readdir(path.join(w.dir, "unpacked")))).sort()).toEqual([h2, `${h2}.ok`])
      expect(h1).not.toBe(h2)
    }))

  it.effect("-cleanold also cleans up when nothing changed (trees left by a crash before the cleanup)", () =>
    Effect.gen(function* () {
      const w = yield* world({ cleanOld: true })
      const h = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      const unpacked = path.join(w.dir, "unpacked")
      const [other, third] = ["a".repeat(64), "b".repeat(64)]
      yield* Effect.promise(async () => {
        await fs.mkdir(path.join(unpacked, other, "app"), { recursive: true })
        await fs.writeFile(path.join(unpacked, `${other}.ok`), "x")
        await fs.mkdir(path.join(unpacked, third)) // an interrupted unpack: no .ok
      })
      expect(yield* w.run(cycle)).toEqual({ _tag: "Unchanged", hash: h })
      expect((yield* Effect.promise(() => fs.readdir(unpacked))).sort()).toEqual([h, `${h}.ok`])
      expect(w.lines).toContain(`info removed old tree ${path.join(unpacked, other)}`)
    }))

  it.effect("without -cleanold an unchanged configuration leaves other trees alone", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const h = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      const other = path.join(w.dir, "unpacked", "a".repeat(64))
      yield* Effect.promise(() => fs.mkdir(other))
      expect(yield* w.run(cycle)).toEqual({ _tag: "Unchanged", hash: h })
      expect(existsSync(other)).toBe(true)
    }))

  it.effect("hash mismatch: the download is discarded, the cycle fails, the state is unchanged", () =>
    Effect.gen(function* () {
      const w = yield* world()
      publish(w.reg, "project1", [code1])
      w.reg.mode = "corrupt"
      const exit = yield* Effect.exit(w.run(cycle))
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("HashMismatch")
      expect(existsSync(path.join(w.dir, "cache", code1.hash))).toBe(false)
      expect(yield* tmpFiles(w)).toEqual([])
      expect(yield* stateOf(w)).toBeUndefined()
      expect(w.script.runs).toHaveLength(0)
    }))

  it.effect("registry down or configuration missing: a typed failure, nothing changes", () =>
    Effect.gen(function* () {
      const w = yield* world()
      w.reg.mode = "down"
      const down = yield* Effect.flip(w.run(cycle))
      expect(down._tag).toBe("RegistryError")
      w.reg.mode = "ok"
      const missing = yield* Effect.flip(w.run(cycle))
      expect(missing.message).toContain('configuration "project1" not found')
      expect(yield* stateOf(w)).toBeUndefined()
    }))

  it.effect("a document whose hash does not match its layers is refused", () =>
    Effect.gen(function* () {
      const w = yield* world()
      publish(w.reg, "project1", [code1])
      w.reg.docs.set("project1", w.reg.docs.get("project1")!.replace(/"Hash": "[0-9a-f]{64}"/, `"Hash": "${"0".repeat(64)}"`))
      const err = yield* Effect.flip(w.run(cycle))
      expect(err._tag).toBe("DocumentError")
      expect(w.reg.downloads).toHaveLength(0)
    }))

  it.effect("failed script: state unchanged; the retry reuses the download and the tree", () =>
    Effect.gen(function* () {
      const w = yield* world()
      const hash = publish(w.reg, "project1", [code1])
      w.script.outcome = 3
      const err = yield* Effect.flip(w.run(cycle))
      expect(err.message).toBe(`deploy script failed for configuration project1 (${hash}): exit status 3`)
      expect(yield* stateOf(w)).toBeUndefined()
      w.script.outcome = 0
      yield* w.run(cycle)
      expect(w.reg.downloads).toHaveLength(1)
      expect(w.lines).toContain(`info reusing unpacked tree ${path.join(w.dir, "unpacked", hash)}`)
      expect(JSON.parse((yield* stateOf(w))!).Hash).toBe(hash)
    }))

  it.effect("-script '' deploys without a script", () =>
    Effect.gen(function* () {
      const w = yield* world({ script: "" })
      const hash = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      expect(w.script.runs).toHaveLength(0)
      expect(JSON.parse((yield* stateOf(w))!).Hash).toBe(hash)
    }))

  for (const step of ["hang-document", "hang-download", "script"] as const) {
    it.effect(`interrupted while ${step === "script" ? "running the script" : step.slice(5) === "document" ? "fetching the document" : "downloading"}: no temp files, state unchanged`, () =>
      Effect.gen(function* () {
        const w = yield* world()
        const h1 = publish(w.reg, "project1", [code1])
        yield* w.run(cycle)
        const before = yield* stateOf(w)
        publish(w.reg, "project1", [code2, config1])
        if (step === "script") w.script.outcome = "hang"
        else w.reg.mode = step
        const fiber = yield* Effect.fork(w.run(cycle))
        yield* Deferred.await(step === "script" ? w.script.reached : w.reg.reached)
        yield* Fiber.interrupt(fiber)
        expect(yield* stateOf(w)).toBe(before)
        expect(JSON.parse(before!).Hash).toBe(h1)
        expect(yield* tmpFiles(w)).toEqual([])
      }))
  }
  it.effect("a deploy failing while the previous one fails too: a typed DeployFailed, then Held without downloading again", () =>
    Effect.gen(function* () {
      const w = yield* world({ check: "/bin/true" })
      const h1 = publish(w.reg, "project1", [code1])
      yield* w.run(cycle)
      const h2 = publish(w.reg, "project1", [code2])
      w.script.outcome = 5
      const failed = yield* w.run(cycle)
      expect(failed._tag).toBe("DeployFailed")
      expect(outcomeOf(failed)).toBe("failed")
      expect(Schema.encodeSync(CycleResult)(failed)).toEqual({
        _tag: "DeployFailed",
        hash: h2,
        previous: h1,
        failure: { Step: "script", Status: "exit status 5", Lines: [] },
        restore: { Step: "script", Status: "exit status 5", Lines: [] }
      })
      expect(w.script.runs.filter((r) => r.step !== "check").map((r) => [r.env.NEWID, r.env.OLDID])).toEqual([[h1, ""], [h2, h1], [h1, h2]])
      const downloads = w.reg.downloads.length
      // Its blob gone from the cache: a cycle trying the hash again would download it.
      yield* Effect.promise(() => fs.rm(path.join(w.dir, "cache", code2.hash)))
      const held = yield* w.run(cycle)
      expect(held).toMatchObject({ _tag: "Held", hash: h2, current: h1 })
      expect(outcomeOf(held)).toBe("failed")
      expect(w.reg.downloads).toHaveLength(downloads)
      expect(w.script.runs).toHaveLength(4) // h1 script + check, h2 script, h1 script: nothing more
      expect(JSON.parse((yield* stateOf(w))!).Hash).toBe(h1)
    }))
})

/**
 * The cycle does real file I/O, which the TestClock cannot see: wait (in real time) until the loop
 * is parked on its next sleep, then move the clock exactly to that wake-up. Returns the new time in s.
 */
const parked = Effect.gen(function* () {
  for (let i = 0; i < 2000; i++) {
    const sleeps = yield* TestClock.sleeps()
    if (Chunk.size(sleeps) > 0) return Chunk.unsafeHead(sleeps)
    yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
  }
  return yield* Effect.die("the loop never went to sleep")
})
const nextWakeup = Effect.gen(function* () {
  const at = yield* parked
  yield* TestClock.setTime(at)
  yield* parked
  return at / 1000
})
const wakeups = (n: number) =>
  Effect.gen(function* () {
    const times: Array<number> = []
    for (let i = 0; i < n; i++) times.push(yield* nextWakeup)
    return times
  })

describe("loop", () => {
  it("agentSchedule: poll after success, doubling backoff capped at 10 × poll after failures", () =>
    Effect.gen(function* () {
      const s = agentSchedule("10 seconds", 0)
      let state = s.initial
      const delays: Array<number> = []
      const ok = Exit.succeed(1)
      const bad = Exit.fail("x")
      for (const input of [ok, bad, bad, bad, bad, bad, bad, ok, bad]) {
        const [next, out] = yield* s.step(0, input, state)
        state = next
        delays.push(Duration.toSeconds(out))
      }
      expect(delays).toEqual([10, 10, 20, 40, 80, 100, 100, 10, 10])
    }).pipe(Effect.runPromise))

  it("agentSchedule: jitter stays within bounds", () =>
    Effect.gen(function* () {
      const s = agentSchedule("10 seconds", "5 seconds")
      for (let i = 0; i < 50; i++) {
        const [, out] = yield* s.step(0, Exit.succeed(1), s.initial)
        expect(Duration.toMillis(out)).toBeGreaterThanOrEqual(10_000)
        expect(Duration.toMillis(out)).toBeLessThanOrEqual(15_000)
      }
    }).pipe(Effect.runPromise))

  it.effect("a failing registry is retried with backoff and logged, never ending the loop", () =>
    Effect.gen(function* () {
      const w = yield* world()
      w.reg.mode = "down"
      const fiber = yield* Effect.fork(w.run(loop({ wake: Effect.never, firstDelay: 0, jitter: 0 })))
      yield* parked
      expect(w.reg.connects).toBe(1)
      // Attempts at t = 0, 10, 30, 70, 150, 250, 350 s: doubling from -poll, capped at 10 × -poll.
      expect(yield* wakeups(6)).toEqual([10, 30, 70, 150, 250, 350])
      expect(w.reg.connects).toBe(7)
      expect(w.lines.filter((l) => l.startsWith("error cycle failed: cannot connect"))).toHaveLength(7)
      expect(w.lines).toContain("error cycle failed: cannot connect to 127.0.0.1:1: ECONNREFUSED; next attempt in 100.0s")
      // Back to the normal poll once the registry answers.
      w.reg.mode = "ok"
      publish(w.reg, "project1", [code1])
      expect(yield* wakeups(3)).toEqual([450, 460, 470])
      expect(w.script.runs).toHaveLength(1)
      expect(w.reg.connects).toBe(10)
      expect(fiber.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("an interruption from within a cycle is a failed cycle: logged and retried, never ending the loop; -once fails", () =>
    Effect.gen(function* () {
      const w = yield* world()
      w.reg.mode = "interrupted"
      // -once: false (exit 1), where it used to end as a stop (exit 0) and log nothing.
      expect(yield* w.run(once)).toBe(false)
      expect(w.lines).toContain("error cycle failed: interrupted from within, not by a signal")
      const fiber = yield* Effect.fork(w.run(loop({ wake: Effect.never, firstDelay: 0, jitter: 0 })))
      expect(yield* wakeups(2)).toEqual([10, 30])
      expect(w.lines).toContain("error cycle failed: interrupted from within, not by a signal; next attempt in 40.0s")
      expect(fiber.unsafePoll()).toBeNull()
      w.reg.mode = "ok"
      publish(w.reg, "project1", [code1])
      expect(yield* wakeups(2)).toEqual([70, 80])
      expect(w.script.runs).toHaveLength(1)
      expect(fiber.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a failing script is retried with backoff, not on every poll (fault 4)", () =>
    Effect.gen(function* () {
      const w = yield* world()
      publish(w.reg, "project1", [code1])
      w.script.outcome = 1
      const fiber = yield* Effect.fork(w.run(loop({ wake: Effect.never, firstDelay: 0, jitter: 0 })))
      expect(yield* wakeups(3)).toEqual([10, 30, 70])
      expect(w.script.runs).toHaveLength(4)
      expect(w.lines.filter((l) => l.includes("deploy script failed for configuration project1"))).toHaveLength(4)
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a wake-up (SIGHUP) polls at once", () =>
    Effect.gen(function* () {
      const w = yield* world({ poll: Duration.hours(1) })
      publish(w.reg, "project1", [code1])
      const wake = yield* Queue.sliding<void>(1)
      const fiber = yield* Effect.fork(w.run(loop({ wake: Queue.take(wake), firstDelay: 0, jitter: 0 })))
      yield* parked
      expect(w.reg.connects).toBe(1)
      yield* Queue.offer(wake, undefined)
      // Wait in real time (the cycle does file I/O) for the second poll; the clock stays at 0.
      for (let i = 0; i < 2000 && w.reg.connects < 2; i++) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      expect(w.reg.connects).toBe(2)
      expect(yield* Clock.currentTimeMillis).toBe(0)
      yield* Fiber.interrupt(fiber)
    }))
})
