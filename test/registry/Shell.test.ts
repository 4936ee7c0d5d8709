// Line editing as a terminal sees it; the shell over a real SSH session is in SshServer.test.ts.
import { describe, expect, it } from "vitest"
import { KeyReader, LineEditor } from "../../src/registry/Shell.js"

const typeInto = (input: string, echo = true) => {
  const reader = new KeyReader()
  const editor = new LineEditor(echo)
  const lines: Array<string> = []
  let eof = false
  let screen = ""
  for (const k of reader.push(input)) {
    const r = editor.apply(k)
    screen += r.echo
    if (r.line !== undefined) lines.push(r.line)
    if (r.eof) eof = true
  }
  return { lines, eof, screen, pending: editor.text }
}

describe("KeyReader + LineEditor", () => {
  it("submits lines on \\r, \\n and \\r\\n (once)", () => {
    expect(typeInto("a\rb\nc\r\nd\n").lines).toEqual(["a", "b", "c", "d"])
  })

  it("backspace deletes before the cursor", () => {
    expect(typeInto("helx\x7flo\r").lines).toEqual(["hello"])
    expect(typeInto("\x7f\x7fok\r").lines).toEqual(["ok"])
  })

  it("left/right arrows move the cursor and typing inserts there", () => {
    expect(typeInto("showcmp\x1b[D\x1b[Do\r").lines).toEqual(["showcomp"])
    expect(typeInto("ac\x1b[Db\x1b[C\x1b[Cd\r").lines).toEqual(["abcd"])
    expect(typeInto("bc\x01a\x05d\r").lines).toEqual(["abcd"]) // Ctrl-A / Ctrl-E
  })

  it("handles escape sequences split across chunks", () => {
    const reader = new KeyReader()
    const editor = new LineEditor(true)
    const feed = (s: string) => reader.push(s).map((k) => editor.apply(k))
    feed("ab\x1b")
    feed("[")
    feed("Dc")
    const r = feed("\r")
    expect(r.at(-1)!.line).toBe("acb")
  })

  it("Ctrl-C clears the line and shows a fresh prompt", () => {
    const t = typeInto("delconf -name x\x03components\r")
    expect(t.lines).toEqual(["components"])
    expect(t.screen).toContain("^C\r\n> ")
  })

  it("Ctrl-D ends the session", () => {
    const t = typeInto("\x04")
    expect(t.eof).toBe(true)
  })

  it("multi-byte characters edit as one", () => {
    expect(typeInto("ñé\x7f\r").lines).toEqual(["ñ"])
  })

  it("up/down recall earlier lines", () => {
    expect(typeInto("one\rtwo\r\x1b[A\x1b[A\r").lines).toEqual(["one", "two", "one"])
    expect(typeInto("one\rdraft\x1b[A\x1b[B!\r").lines).toEqual(["one", "draft!"])
  })

  it("echoes nothing without a terminal, and never colour codes", () => {
    const t = typeInto("abc\x1b[Dd\r", false)
    expect(t.screen).toBe("")
    expect(t.lines).toEqual(["abdc"])
    expect(typeInto("abc\r").screen).not.toMatch(/\x1b\[[0-9;]*m/)
  })

  it("ignores other control characters", () => {
    expect(typeInto("a\x07b\tc\r").lines).toEqual(["abc"])
  })
})
