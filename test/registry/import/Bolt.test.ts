// The read-only bolt reader: against the Go registry's real file, against files written by our test
// writer (branch, overflow, inline and paged buckets), and against damaged files, which must give one
// line of BoltCorrupt, never another exception.
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { BoltCorrupt, type BoltBucket, openBolt } from "../../../src/registry/import/Bolt.js"
import { type BoltTree, metaOffset, writeBolt } from "../../support/boltWriter.js"
import { FIXTURE } from "../../support/goRegistry.js"

/** The whole content as a plain object, reading every page. */
const dump = (b: BoltBucket): unknown =>
  Object.fromEntries(b.entries().map((e) => [e.key.toString(), e._tag === "Bucket" ? dump(e.bucket) : e.value.toString()]))

const plain = (t: BoltTree): unknown =>
  Object.fromEntries([...t.entries()].map(([k, v]) => [k, v instanceof Map ? plain(v) : v.toString()]))

/** Reads everything; returns the BoltCorrupt message, or "ok". */
const outcome = (bytes: Buffer): string => {
  try {
    dump(openBolt(bytes).root)
    return "ok"
  } catch (e) {
    if (e instanceof BoltCorrupt) return e.message
    throw e
  }
}

const big = (): BoltTree => {
  const many: BoltTree = new Map()
  for (let i = 0; i < 400; i++) many.set(`key-${String(i).padStart(4, "0")}`, `value ${i} `.repeat(1 + (i % 5)))
  const small: BoltTree = new Map([["a", "1"], ["b", "2"]])
  const nested: BoltTree = new Map<string, BoltTree | string>([["inner", new Map([["x", "y"]])], ["huge", "h".repeat(10_000)]])
  return new Map<string, BoltTree | string>([["many", many], ["small", small], ["nested", nested], ["top", "level"]])
}

describe("Bolt reader", () => {
  it("reads the Go registry's state.db: its buckets and keys", () => {
    const db = openBolt(readFileSync(path.join(FIXTURE, "data/state.db")))
    expect(db.pageSize).toBe(4096)
    expect(db.root.entries().map((e) => e.key.toString())).toEqual(["components", "configs", "files"])
    const code = db.root.bucket("components")!.bucket("code")!
    expect(code.bucket("byVersion")!.entries().map((e) => e.key.toString())).toEqual(["v01", "v02", "v03"])
    expect(JSON.parse(db.root.bucket("configs")!.bucket("web")!.value("current")!.toString()).Hash).toBe(
      "3e3f0508b1cee9bdaef500b6df882facb2c04e4de8e3d646ea6434ff363e4284"
    )
  })

  it("reads back every key of a written file with branch pages, overflow pages, inline and paged buckets", () => {
    const tree = big()
    const { bytes, stats } = writeBolt(tree)
    expect(stats.branchPages).toBeGreaterThan(0)
    expect(stats.overflowPages).toBeGreaterThan(0)
    expect(stats.inlineBuckets).toBeGreaterThan(0)
    expect(stats.pagedBuckets).toBeGreaterThan(0)
    expect(dump(openBolt(bytes).root)).toEqual(plain(tree))
  })

  it("reads with other page sizes", () => {
    for (const pageSize of [1024, 16384]) {
      const tree = big()
      expect(dump(openBolt(writeBolt(tree, { pageSize }).bytes).root)).toEqual(plain(tree))
    }
  })

  it("takes the valid meta page with the highest txid, and the other one when its checksum is bad", () => {
    const older: BoltTree = new Map([["which", "older"]])
    const newer: BoltTree = new Map([["which", "newer"]])
    const { bytes } = writeBolt(newer, { previous: older })
    expect(openBolt(bytes).root.value("which")!.toString()).toBe("newer")
    const damaged = Buffer.from(bytes)
    damaged[metaOffset(1) + 20]! ^= 0xff // inside the root pointer, covered by the checksum
    expect(openBolt(damaged).root.value("which")!.toString()).toBe("older")
    damaged[metaOffset(0) + 20]! ^= 0xff
    expect(outcome(damaged)).toBe("meta page checksum mismatch")
  })

  it("gives one line for every kind of damage", () => {
    const { bytes } = writeBolt(big())
    const cases: Array<[string, Buffer, RegExp]> = []
    cases.push(["empty", Buffer.alloc(0), /too short/])
    cases.push(["not bolt", Buffer.from("SQLite format 3\u0000".padEnd(8192, "x")), /bad magic/])
    cases.push(["truncated to the metas", bytes.subarray(0, 3 * 4096), /beyond the end of the file/])
    cases.push(["truncated mid-file", bytes.subarray(0, Math.floor(bytes.length / 2)), /beyond the end of the file|out of range/])
    const root = Number(bytes.readBigUInt64LE(metaOffset(1) + 16))
    const rootPage = root * 4096
    const at = (label: string, edit: (b: Buffer) => void, why: RegExp) => {
      const b = Buffer.from(bytes)
      edit(b)
      cases.push([label, b, why])
    }
    at("leaf key offset out of range", (b) => b.writeUInt32LE(0x7fffffff, rootPage + 16 + 4), /out of range/)
    at("leaf value size out of range", (b) => b.writeUInt32LE(0xffffffff, rootPage + 16 + 12), /out of range/)
    at("page count beyond the page", (b) => b.writeUInt16LE(0xffff, rootPage + 10), /out of range/)
    at("page of another id", (b) => b.writeBigUInt64LE(99n, rootPage), /id of another page/)
    at("unknown page type", (b) => b.writeUInt16LE(0x40, rootPage + 8), /unexpected page type/)
    at("overflow beyond the file", (b) => b.writeUInt32LE(1_000_000, rootPage + 12), /beyond the end|out of range/)
    for (const [label, b, why] of cases) {
      const msg = outcome(b)
      expect(msg, label).toMatch(why)
      expect(msg, label).not.toContain("\n")
    }
  })

  it("refuses a page tree that points back at itself instead of looping", () => {
    // A branch root whose first child is the root itself.
    const many: BoltTree = new Map(Array.from({ length: 300 }, (_, i) => [`k${String(i).padStart(3, "0")}`, "v".repeat(40)] as const))
    const { bytes } = writeBolt(many)
    const root = Number(bytes.readBigUInt64LE(metaOffset(1) + 16))
    expect(bytes.readUInt16LE(root * 4096 + 8)).toBe(0x01)
    const b = Buffer.from(bytes)
    b.writeBigUInt64LE(BigInt(root), root * 4096 + 16 + 8)
    expect(outcome(b)).toMatch(/referenced twice/)
  })

  it("never throws anything but BoltCorrupt on random damage", () => {
    const { bytes } = writeBolt(big())
    const pages = bytes.length / 4096
    // Most edits land in page headers and element arrays, where offsets and sizes live.
    const offset = FastCheck.oneof(
      FastCheck.nat(bytes.length - 1),
      FastCheck.tuple(FastCheck.nat(pages - 1), FastCheck.nat(95)).map(([p, o]) => p * 4096 + o)
    )
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.tuple(offset, FastCheck.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        FastCheck.option(FastCheck.nat(bytes.length)),
        (edits, cut) => {
          const b = Buffer.from(bytes)
          for (const [off, v] of edits) b[off] = v
          const msg = outcome(cut === null ? b : b.subarray(0, cut))
          expect(msg).not.toContain("\n")
        }
      ),
      { numRuns: 300 }
    )
  })
})
