import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, FastCheck as fc, Schema } from "effect"
import {
  ComponentName,
  componentNameProblem,
  ConfigurationName,
  configurationNameProblem,
  Sha256,
  sha256Problem,
  versionProblem
} from "../../src/domain/Names.js"

describe("name rules", () => {
  it("accepts ordinary names", () => {
    for (const n of ["code", "nginx.l0", "my app", "ünïcode", "a-b_c.d"]) {
      expect(componentNameProblem(n)).toBeUndefined()
      expect(configurationNameProblem(n)).toBeUndefined()
      expect(versionProblem(n)).toBeUndefined()
    }
  })

  it("rejects what the contract forbids, with the original wording where it had one", () => {
    expect(componentNameProblem("a:b")).toBe("name cannot contain : symbol")
    expect(configurationNameProblem("a/b")).toBe("name cannot contain / symbol")
    expect(configurationNameProblem("../etc")).toBe("name cannot contain / symbol")
    expect(componentNameProblem("")).toBe("component name cannot be empty")
    expect(configurationNameProblem("..")).toBe(`configuration name cannot be "." or ".."`)
    expect(configurationNameProblem(".")).toBeDefined()
    expect(versionProblem("v\n1")).toBe("version name cannot contain control characters")
    expect(componentNameProblem("a\u007fb")).toBeDefined()
    expect(configurationNameProblem("x".repeat(256))).toBeDefined()
    expect(configurationNameProblem("é".repeat(128))).toBeDefined() // 256 bytes
  })

  it("refuses C1 controls, format characters and lone surrogates in every kind of name", () => {
    const bad = ["a\u009bb", "a\u0085b", "ab\u202egnp.exe", "a\u200bb", "a\u2066b", "a\ufeffb", "a\ud800b", "a\udc00", "\ud83d"]
    for (const n of bad) {
      expect(componentNameProblem(n), JSON.stringify(n)).toBeDefined()
      expect(configurationNameProblem(n), JSON.stringify(n)).toBeDefined()
      expect(versionProblem(n), JSON.stringify(n)).toBeDefined()
    }
    expect(versionProblem("v\u009b1")).toBe("version name cannot contain control characters")
    expect(componentNameProblem("a\u202eb")).toBe("component name cannot contain invisible format characters (bidi, zero-width)")
    expect(configurationNameProblem("a\ud800")).toBe("configuration name cannot contain unpaired surrogates")
    // A paired surrogate is one ordinary character.
    expect(componentNameProblem("rocket-\ud83d\ude80")).toBeUndefined()
  })

  it("sha256 is 64 lowercase hex digits", () => {
    expect(sha256Problem("a".repeat(64))).toBeUndefined()
    expect(sha256Problem("A".repeat(64))).toBeDefined()
    expect(sha256Problem("a".repeat(63))).toBeDefined()
    expect(sha256Problem("g".repeat(64))).toBeDefined()
  })

  it("properties: any name with the forbidden symbol or a control character is refused", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.integer({ min: 0, max: 31 }), (a, b, cc) => {
        expect(componentNameProblem(`${a}:${b}`)).toBeDefined()
        expect(configurationNameProblem(`${a}/${b}`)).toBeDefined()
        expect(versionProblem(`${a}${String.fromCharCode(cc)}${b}`)).toBeDefined()
      })
    )
  })

  it("properties: generated names satisfy the rules and the schemas agree with the problem functions", () => {
    fc.assert(
      fc.property(Arbitrary.make(ComponentName), Arbitrary.make(ConfigurationName), Arbitrary.make(Sha256), (c, p, h) => {
        expect(componentNameProblem(c)).toBeUndefined()
        expect(configurationNameProblem(p)).toBeUndefined()
        expect(sha256Problem(h)).toBeUndefined()
      })
    )
    fc.assert(
      fc.property(fc.fullUnicodeString(), (s) => {
        expect(Schema.is(ComponentName)(s)).toBe(componentNameProblem(s) === undefined)
        expect(Schema.is(ConfigurationName)(s)).toBe(configurationNameProblem(s) === undefined)
      })
    )
  })
})
