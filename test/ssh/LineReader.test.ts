import { describe, expect, it } from "vitest"
import { lineReader } from "../../src/ssh/LineReader.js"

const reader = (max = 16) => {
  const lines: Array<string> = []
  let tooLong = 0
  const push = lineReader(max, (l) => lines.push(l), () => tooLong++)
  return { push, lines, tooLong: () => tooLong }
}

describe("lineReader", () => {
  it("joins lines across chunks, and a UTF-8 character split between two chunks", () => {
    const r = reader()
    const bytes = Buffer.from("ab\nc\u00e9d\n\ne")
    const cut = bytes.indexOf(0xa9) // inside the two bytes of é
    r.push(bytes.subarray(0, cut))
    r.push(bytes.subarray(cut))
    expect(r.lines).toEqual(["ab", "c\u00e9d", ""])
    r.push(Buffer.from("f\n"))
    expect(r.lines).toEqual(["ab", "c\u00e9d", "", "ef"])
    expect(r.tooLong()).toBe(0)
  })

  it("stops at a line longer than the limit, complete or not, and reads nothing after it", () => {
    const whole = reader(4)
    whole.push(Buffer.from("ok\n12345\nlater\n"))
    expect(whole.lines).toEqual(["ok"])
    expect(whole.tooLong()).toBe(1)
    const partial = reader(4)
    partial.push(Buffer.from("123"))
    partial.push(Buffer.from("45"))
    expect(partial.tooLong()).toBe(1)
    partial.push(Buffer.from("\nx\n"))
    expect(partial.lines).toEqual([])
    expect(partial.tooLong()).toBe(1)
  })
})
