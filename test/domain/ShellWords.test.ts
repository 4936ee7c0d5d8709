import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { join, quote, split } from "../../src/domain/ShellWords.js"

const words = (line: string) => Either.getOrThrow(split(line))

describe("split", () => {
  it("splits on blanks and honours quotes and backslashes like sh", () => {
    expect(words("  addconf -name  'p3 x' -layer \"a:b c\"\t-v ")).toEqual(["addconf", "-name", "p3 x", "-layer", "a:b c", "-v"])
    expect(words(`a\\ b 'it'\\''s' "q\\"uote" "\\$x\\n"`)).toEqual(["a b", "it's", 'q"uote', "$x\\n"])
    expect(words(`-name=""`)).toEqual(["-name="])
    expect(words(`'' ""`)).toEqual(["", ""])
    expect(words("")).toEqual([])
  })

  it("refuses unterminated quotes with a usage error", () => {
    expect(split("a 'b").pipe(Either.getLeft).pipe((o) => o._tag === "Some" && o.value.message)).toBe("unterminated single quote")
    expect(Either.isLeft(split('a "b'))).toBe(true)
  })
})

describe("quote/join", () => {
  it("leaves safe words alone and single-quotes the rest", () => {
    expect(quote("code:v01")).toBe("code:v01")
    expect(quote("p3 x")).toBe("'p3 x'")
    expect(quote("it's")).toBe(`'it'\\''s'`)
    expect(quote("")).toBe("''")
  })

  it("split(join(words)) gives the words back, whatever they hold", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.constantFrom("'", '"', "\\", " ", "\n", "$(x)"))), (ws) => {
        expect(words(join(ws))).toEqual(ws)
      }),
      { numRuns: 300 }
    )
  })

  it("split never throws on any line", () => {
    fc.assert(fc.property(fc.fullUnicodeString(), (line) => Either.isEither(split(line))), { numRuns: 300 })
  })
})
