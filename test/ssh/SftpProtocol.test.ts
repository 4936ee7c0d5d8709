import { describe, expect, it } from "vitest"
import { dirAttrs, fileAttrs, longname, normalizePath } from "../../src/ssh/SftpProtocol.js"

describe("normalizePath", () => {
  it("resolves against / and never climbs above it", () => {
    expect(normalizePath(".")).toBe("/")
    expect(normalizePath("")).toBe("/")
    expect(normalizePath("configs/x.json")).toBe("/configs/x.json")
    expect(normalizePath("//configs//x.json")).toBe("/configs/x.json")
    expect(normalizePath("/files/../state.db")).toBe("/state.db")
    expect(normalizePath("/configs/../../etc/passwd")).toBe("/etc/passwd")
    expect(normalizePath("../../..")).toBe("/")
    expect(normalizePath("/configs/./a/../b.json")).toBe("/configs/b.json")
    expect(normalizePath("/configs/")).toBe("/configs")
  })
  it("refuses NUL bytes", () => {
    expect(normalizePath("/configs/a\0.json")).toBeUndefined()
  })
})

describe("attributes", () => {
  it("formats ls -l lines for files and directories", () => {
    const t = new Date(Date.UTC(2017, 2, 1, 11, 23, 36))
    expect(longname("a.json", fileAttrs(123, t))).toBe("-r--r--r--    1 0        0             123 Mar  1 11:23 a.json")
    expect(longname("configs", dirAttrs(t))).toMatch(/^dr-xr-xr-x .* configs$/)
  })
})
