import { it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { describe, expect } from "vitest"
import { exec } from "../../src/ssh/Exec.js"
import { useFakeServer } from "./fakeServer.js"

const fake = useFakeServer()
const connected = fake.connect

describe("exec", () => {
  it.scopedLive("collects stdout and exit code 0", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const r = yield* exec(client, "echo hello 'world'")
      expect(r.stdout.toString()).toBe("hello 'world'\n")
      expect(r.stderr.length).toBe(0)
      expect(r.code).toBe(0)
      expect(fake.server.commands).toContain("echo hello 'world'")
    })
  )

  it.scopedLive("a non-zero exit is a result, not a failure", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const r = yield* exec(client, "fail nope")
      expect(r.stdout.toString()).toBe("error: nope\n")
      expect(r.code).toBe(1)
    })
  )

  it.scopedLive("keeps stderr apart, and runs several commands on one connection", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const a = yield* exec(client, "stderr warn")
      const b = yield* exec(client, "big 5000")
      expect(a.stderr.toString()).toBe("warn\n")
      expect(a.stdout.length).toBe(0)
      const lines = b.stdout.toString().split("\n")
      expect(lines.length).toBe(5001)
      expect(lines[4999]).toBe("line 4999")
    })
  )

  it.scopedLive("no exit status gives code null", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const r = yield* exec(client, "noexit")
      expect(r.code).toBeNull()
    })
  )

  it.scopedLive("fails, not hangs, when the connection drops", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const f = yield* Effect.fork(exec(client, "hang"))
      yield* Effect.sleep("50 millis")
      client.end()
      const exit = yield* Fiber.await(f)
      expect(Exit.isFailure(exit)).toBe(true)
    })
  )

  it.scopedLive("can be interrupted", () =>
    Effect.gen(function* () {
      const client = yield* connected()
      const r = yield* exec(client, "hang").pipe(Effect.timeout("100 millis"), Effect.exit)
      expect(Exit.isFailure(r)).toBe(true)
      // the connection is still usable
      const ok = yield* exec(client, "echo again")
      expect(ok.stdout.toString()).toBe("again\n")
    })
  )
})
