import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { escapeUnprintable, quote } from "../../src/domain/LogText.js"

describe("quote", () => {
  it("cannot forge a log line or carry terminal escapes", () => {
    const forged = "x\nhost key fingerprint: SHA256:AAAA\r\u001b[2J\u009b31m\u202e"
    const q = quote(forged)
    expect(q).toBe('"x\\x0ahost key fingerprint: SHA256:AAAA\\x0d\\x1b[2J\\x9b31m\\u202e"')
    expect(q).not.toMatch(/[\n\r\u001b\u009b\u202e]/)
  })

  it("escapes quotes and backslashes so the token is unambiguous, and cuts long strings", () => {
    expect(quote('a"b\\c')).toBe('"a\\"b\\\\c"')
    expect(quote("x".repeat(500))).toBe(`"${"x".repeat(200)}…"`)
    expect(quote("ünïcode 🚀")).toBe('"ünïcode 🚀"')
    expect(quote("\ud800")).toBe('"\\ud800"')
  })

  // The characters of fc.string({ unit: "binary" }) (every code point but the surrogates, by index, small
  // ones favoured, as its mapToConstant draws them), whose first use builds a reverse table of 1.1M entries
  // for shrinking: ~1 s of CPU.
  const binaryUnit = fc.nat({ max: 0x10ffff - 0x800 }).map((n) => String.fromCodePoint(n < 0xd800 ? n : n + 0x800))
  it("any string gives one printable line", () => {
    fc.assert(
      fc.property(fc.string({ unit: binaryUnit }), (s) => {
        const q = quote(s, 10_000)
        expect(q).not.toMatch(/[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u)
        expect(escapeUnprintable(s)).not.toMatch(/[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u)
      })
    )
  })
})
