import { describe, expect, it } from "@effect/vitest"
import { MAX_DEPTH, MAX_PATH_BYTES, quoteName, sizeProblem, splitPath } from "../../src/archive/PathRules.js"

describe("PathRules", () => {
  it("splits like the unpacker: no empty or . components, leading / noted, .. refused", () => {
    expect(splitPath("./a//b/./c/", "path")).toEqual({ parts: ["a", "b", "c"], absolute: false })
    expect(splitPath("/etc/x", "path")).toEqual({ parts: ["etc", "x"], absolute: true })
    expect(splitPath("./", "path")).toEqual({ parts: [], absolute: false })
    expect(splitPath("a/../b", "path")).toBe('path contains a ".." component')
    expect(splitPath("..", "hard link target")).toBe('hard link target contains a ".." component')
    expect(splitPath("a/..b/c..", "path")).toEqual({ parts: ["a", "..b", "c.."], absolute: false })
  })

  it("limits bytes (UTF-8) and depth", () => {
    expect(sizeProblem("a".repeat(MAX_PATH_BYTES), "path")).toBeUndefined()
    expect(sizeProblem("a".repeat(MAX_PATH_BYTES + 1), "path")).toBe("path is longer than 4096 bytes")
    expect(sizeProblem("é".repeat(MAX_PATH_BYTES / 2 + 1), "path")).toBe("path is longer than 4096 bytes")
    expect(sizeProblem("a/".repeat(MAX_DEPTH - 1) + "a", "path")).toBeUndefined()
    expect(sizeProblem("a/".repeat(MAX_DEPTH) + "a", "symbolic link target")).toBe("symbolic link target has more than 1024 components")
  })

  it("quotes names on one line, escaping control and format characters, cut after 200 characters", () => {
    expect(quoteName("a/b")).toBe('"a/b"')
    expect(quoteName('q"\\')).toBe('"q\\"\\\\"')
    expect(quoteName("x\ny\r\t\u0000\u001b[31m\u007f\u009b\u202e\u200b\u2028")).toBe(
      '"x\\x0ay\\x0d\\x09\\x00\\x1b[31m\\x7f\\x9b\\u202e\\u200b\\u2028"'
    )
    expect(quoteName("\ud800x")).toBe('"\\ud800x"') // LogText.quote, shared with the logs
    expect(quoteName("ü😀")).toBe('"ü😀"')
    expect(quoteName("a".repeat(201))).toBe(`"${"a".repeat(200)}…"`)
    expect(quoteName("😀".repeat(300))).toBe(`"${"😀".repeat(200)}…"`)
  })
})
