import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { acquireLock } from "../../src/agent/Lock.js"
import { tempDir } from "./support.js"

let dir: string
beforeEach(async () => {
  dir = await tempDir("agent-lock-")
})
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})

it("allows one holder per directory (by real path) and frees the lock with its scope", async () => {
  const scope = await Effect.runPromise(Scope.make())
  await Effect.runPromise(Scope.extend(acquireLock(dir), scope))
  await fs.symlink(dir, path.join(path.dirname(dir), path.basename(dir) + "-link"))
  try {
    const second = await Effect.runPromise(Effect.flip(Effect.scoped(acquireLock(path.join(path.dirname(dir), path.basename(dir) + "-link")))))
    expect(second._tag).toBe("LockHeld")
    expect(second.message).toContain("already running")
    const other = await tempDir("agent-lock-other-")
    await Effect.runPromise(Effect.scoped(acquireLock(other))) // another directory is independent
    await fs.rm(other, { recursive: true })
  } finally {
    await fs.rm(path.join(path.dirname(dir), path.basename(dir) + "-link"))
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await Effect.runPromise(Effect.scoped(acquireLock(dir)))
  expect(await fs.readdir(dir)).toEqual([]) // nothing on disk (abstract socket)
})
