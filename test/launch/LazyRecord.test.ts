import { describe, expect, it } from "vitest"
import { lazyRecord } from "../../src/launch/LazyRecord.js"

describe("lazyRecord", () => {
  it("makes a value on its first read only, once, and lists every key", () => {
    const made: Array<string> = []
    const r = lazyRecord(["a", "b", "c"] as const, (k) => (made.push(k), { k }))
    expect(made).toEqual([])
    const b = r.b
    expect(b).toEqual({ k: "b" })
    expect(r.b).toBe(b)
    expect(made).toEqual(["b"])
    expect(Object.keys(r)).toEqual(["a", "b", "c"])
    expect(Object.values(r).map((v) => v.k)).toEqual(["a", "b", "c"])
    expect(made).toEqual(["b", "a", "c"])
  })
})
