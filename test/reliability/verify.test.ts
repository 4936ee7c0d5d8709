// `deploy-registry verify -dir D` on a stopped registry's directory: clean passes, a flipped byte in a
// blob and a missing blob are each reported on one line with exit 1, and verify never changes the store.
import { randomBytes } from "node:crypto"
import { readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { openSession } from "./lib/client.js"
import { layerOf } from "../support/tar.js"
import { snapshot, verifyDir } from "./lib/proc.js"

let reg: TestRegistry
let blobA: string
let blobB: string

// Keys and the host key are not the store; everything else is.
const store = (dir: string) => snapshot(dir, (rel) => rel === "test-keys")

beforeAll(async () => {
  reg = await startRegistry()
  const s = await openSession(reg, reg.operator.privatePath)
  try {
    blobA = await s.upload(layerOf(randomBytes(300_000)))
    blobB = await s.upload(layerOf(randomBytes(1000)))
    for (const cmd of [
      `addver -name code -version v1 -hash ${blobA}`,
      `addver -name conf -version v1 -hash ${blobB}`,
      "addconf -name p1 -layer code:v1 -layer conf:v1",
      `changeconf -name p1 -component code -version v1`
    ]) {
      const r = await s.exec(cmd)
      expect(r.code, `${cmd}: ${r.stdout.toString()}`).toBe(0)
    }
  } finally {
    await s.close()
  }
  expect(await reg.stop()).not.toBeNull()
})

afterAll(async () => {
  await reg?.stop("SIGKILL")
  if (reg) rmSync(reg.dir, { recursive: true, force: true })
})

describe("deploy-registry verify -dir", () => {
  it("passes on a clean store and leaves it unchanged", async () => {
    const before = store(reg.dir)
    const r = await verifyDir(reg.dir)
    expect(r.stderr).toBe("")
    expect(r.stdout).toMatch(/^ok\b.*\n$/)
    expect(r.code).toBe(0)
    expect(store(reg.dir)).toEqual(before)
  })

  it("reports a corrupted blob on one line, exit 1, read-only", async () => {
    const file = path.join(reg.dir, "files", blobA)
    const original = readFileSync(file)
    const flipped = Buffer.from(original)
    flipped[12345] = flipped[12345]! ^ 0x01
    writeFileSync(file, flipped)
    try {
      const before = store(reg.dir)
      const r = await verifyDir(reg.dir)
      expect(r.code).toBe(1)
      const lines = r.stdout.split("\n").filter((l) => l !== "")
      const about = lines.filter((l) => l.includes(blobA))
      expect(about).toHaveLength(1)
      expect(about[0]).toMatch(/sha256|corrupt|mismatch/i)
      expect(lines.filter((l) => l.includes(blobB))).toEqual([])
      expect(store(reg.dir)).toEqual(before)
    } finally {
      writeFileSync(file, original)
    }
  })

  it("reports a missing blob that a version references, exit 1, read-only", async () => {
    const file = path.join(reg.dir, "files", blobB)
    const original = readFileSync(file)
    unlinkSync(file)
    try {
      const before = store(reg.dir)
      const r = await verifyDir(reg.dir)
      expect(r.code).toBe(1)
      const about = r.stdout.split("\n").filter((l) => l.includes(blobB))
      expect(about.length).toBeGreaterThanOrEqual(1)
      expect(about.join("\n")).toMatch(/missing/)
      expect(about.join("\n")).toContain("conf")
      expect(store(reg.dir)).toEqual(before)
    } finally {
      writeFileSync(file, original)
    }
    // restored: clean again
    expect((await verifyDir(reg.dir)).code).toBe(0)
  })

  it("refuses a directory that holds no registry (exit 1, one line, nothing created)", async () => {
    const empty = path.join(reg.dir, "not-a-registry")
    const r = await verifyDir(empty)
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(() => readFileSync(path.join(empty, "state.db"))).toThrow()
  })
})
