// Line editing as a terminal sees it; the shell over a real SSH session is in SshServer.test.ts.
import { describe, expect, it } from "vitest"
import { randomBytes } from "node:crypto"
import { StringDecoder } from "node:string_decoder"
import { KeyReader, LineEditor, MAX_LINE } from "../../src/registry/Shell.js"

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

  it("drops a broken escape sequence without swallowing the Enter or the next command", () => {
    // a control character, non-ASCII or an overlong run of parameters ends the sequence; the rest is typed
    expect(typeInto("\x1b[12\rhelp\r").lines).toEqual(["", "help"])
    expect(typeInto("x\x1b[\x15help\r").lines).toEqual(["help"])
    expect(typeInto("\x1bO\rab\r").lines).toEqual(["", "ab"])
    expect(typeInto("a\x1b[1;2\u00e9b\r").lines).toEqual(["a\u00e9b"])
    expect(typeInto(`\x1b[${"1".repeat(5000)}\rok\r`).lines.at(-1)).toBe("ok")
  })

  it("keeps at most a short incomplete sequence between chunks", () => {
    const reader = new KeyReader()
    const editor = new LineEditor(false)
    const lines: Array<string> = []
    const feed = (s: string) => reader.push(s).forEach((k) => {
      const r = editor.apply(k)
      if (r.line !== undefined) lines.push(r.line)
    })
    feed("\x1b[")
    for (let i = 0; i < 100; i++) feed("1;")
    feed("\x15\rhelp\r")
    expect(lines.at(-1)).toBe("help")
    feed("ab\x1bO") // SS3 split after the O
    feed("D!\r")
    expect(lines.at(-1)).toBe("a!b")
  })

  it("invalid UTF-8 becomes one editable character, and C1 controls are never echoed", () => {
    const decoder = new StringDecoder("utf8")
    const input = decoder.write(Buffer.from([0x61, 0xff, 0xe2, 0x82])) + decoder.write(Buffer.from([0x62, 0xc2, 0x9b, 0x7f, 0x0d]))
    const t = typeInto(input)
    expect(t.lines).toEqual(["a\ufffd\ufffd"]) // 0xff, the cut-off euro sign; b deleted; U+009B ignored
    expect(t.screen).not.toContain("\u009b")
  })

  it("^D deletes under the cursor on a non-empty line and ends the session only on an empty one", () => {
    const t = typeInto("abc\x01\x04\r")
    expect(t.eof).toBe(false)
    expect(t.lines).toEqual(["bc"])
  })

  it("caps the line length", () => {
    const t = typeInto("x".repeat(MAX_LINE + 10) + "\r", false)
    expect(t.lines[0]!.length).toBe(MAX_LINE)
  })

  it("random bytes never stop later lines from being read", () => {
    for (let round = 0; round < 200; round++) {
      const reader = new KeyReader()
      const editor = new LineEditor(true)
      const decoder = new StringDecoder("utf8")
      const lines: Array<string> = []
      const feed = (b: Buffer) => reader.push(decoder.write(b)).forEach((k) => {
        const r = editor.apply(k)
        if (r.line !== undefined) lines.push(r.line)
      })
      for (let i = 0; i < 10; i++) {
        const junk = Buffer.concat([randomBytes((i * 37) % 300), round % 2 ? Buffer.from("\x1b[1") : Buffer.from("\x1b")])
        feed(Buffer.from(junk.filter((b) => b !== 0x04))) // ends inside an escape sequence
      }
      feed(Buffer.from("\x15\rhelp\r"))
      expect(lines.at(-1)).toBe("help")
    }
  })
})
