import { describe, expect, it } from "vitest"
import { parseConfigScope } from "../../src/domain/ConfigScope.js"
import { interpretOptions } from "../../src/ssh/KeyOptions.js"

const scope = (text: string) => {
  const s = parseConfigScope(text)
  if (typeof s === "string") throw new Error(s)
  return s
}

describe("configurations= (scoped agent keys)", () => {
  it("names and globs: * any run, ? one character, the rest literally", () => {
    const s = scope("project1,web-*,db-?")
    for (const yes of ["project1", "web-", "web-eu-1", "db-1"]) expect(s.allows(yes), yes).toBe(true)
    for (const no of ["project", "project10", "web", "xweb-1", "db-", "db-12", "Project1"]) expect(s.allows(no), no).toBe(false)
    // Regular-expression characters are letters here.
    expect(scope("a.b+(c)").allows("a.b+(c)")).toBe(true)
    expect(scope("a.b").allows("axb")).toBe(false)
    expect(scope("*").allows("anything at all")).toBe(true)
  })

  it("refuses values a typo makes, naming the entry", () => {
    for (const bad of ["", "a,", ",a", "a,,b", "a/b", "..", "x\u0007"]) expect(typeof parseConfigScope(bad), JSON.stringify(bad)).toBe("string")
  })

  it("is a known option of an authorized_keys line, once, with a value", () => {
    const r = interpretOptions([{ name: "restrict" }, { name: "Configurations", value: "p1,web-*" }])
    expect(typeof r !== "string" && r.configurations?.allows("web-2")).toBe(true)
    expect(interpretOptions([{ name: "configurations" }])).toMatch(/needs a value/)
    expect(interpretOptions([{ name: "configurations", value: "a" }, { name: "configurations", value: "b" }])).toMatch(/twice/)
    expect(interpretOptions([{ name: "configurations", value: "a,,b" }])).toMatch(/empty entry/)
    const plain = interpretOptions([])
    expect(typeof plain !== "string" && plain.configurations).toBeUndefined()
  })
})
