// The operator's interactive shell: a `> ` prompt, one command per line through CommandInterpreter.run, until
// `exit`, Ctrl-D on an empty line or end of input. With a pty we echo and edit the line (backspace, left/right, home/end,
// Ctrl-A/E/U/K, Ctrl-C clears the line, up/down recall earlier lines) and print \r\n line ends; without
// one we only read lines. No colour codes either way (fault 11: scripts read this output).
import { Effect, Queue } from "effect"
import { StringDecoder } from "node:string_decoder"
import type { ServerChannel } from "ssh2"
import type { Principal } from "../domain/Principal.js"
import { CommandInterpreter } from "./CommandInterpreter.js"

export const PROMPT = "> "

export type Key =
  | { readonly _tag: "Char"; readonly ch: string }
  | {
    readonly _tag:
      | "Enter" | "Backspace" | "Delete" | "Left" | "Right" | "Home" | "End" | "Up" | "Down"
      | "Interrupt" | "Eof" | "KillLine" | "KillToEnd" | "Ignore"
  }

const key = (_tag: Exclude<Key["_tag"], "Char">): Key => ({ _tag }) as Key

// Longest escape sequence we wait for; anything longer is garbage, not a key.
const MAX_SEQUENCE = 32
// Longest line we edit; more is dropped (a bell with a terminal) instead of growing without bound.
export const MAX_LINE = 65_536

const isFinal = (code: number) => code >= 0x40 && code <= 0x7e
// CSI parameter (0x30–0x3f) and intermediate (0x20–0x2f) bytes, ECMA-48.
const isParam = (code: number) => code >= 0x20 && code <= 0x3f

/**
 * Splits terminal input into keys; keeps an incomplete escape sequence for the next chunk. A sequence broken
 * by any byte that cannot continue it (a control character, non-ASCII, or too long) is dropped and that byte is
 * read as ordinary input, so junk can never swallow a later Enter or command.
 */
export class KeyReader {
  private pending = ""
  private lastWasCR = false

  push(input: string): Array<Key> {
    const s = this.pending + input
    this.pending = ""
    const out: Array<Key> = []
    let i = 0
    while (i < s.length) {
      const c = s[i]!
      if (c === "\x1b") {
        this.lastWasCR = false
        if (i + 1 >= s.length) {
          this.pending = s.slice(i)
          break
        }
        const kind = s[i + 1]
        if (kind === "[") {
          let j = i + 2
          while (j < s.length && j - i < MAX_SEQUENCE && isParam(s.charCodeAt(j))) j++
          if (j >= s.length) {
            this.pending = s.slice(i) // at most MAX_SEQUENCE characters
            break
          }
          if (isFinal(s.charCodeAt(j))) {
            out.push(escapeKey(s.slice(i + 2, j), s[j]!))
            i = j + 1
          } else {
            i = j // not a sequence: drop what we have, read s[j] normally
          }
        } else if (kind === "O") {
          // SS3: exactly one final character (application-mode arrows, Home/End)
          if (i + 2 >= s.length) {
            this.pending = s.slice(i)
            break
          }
          if (isFinal(s.charCodeAt(i + 2))) {
            out.push(escapeKey("", s[i + 2]!))
            i += 3
          } else {
            i += 2
          }
        } else {
          i += 1 // a lone ESC (Alt-key): drop the ESC, keep the key
        }
        continue
      }
      const cp = s.codePointAt(i)!
      const ch = String.fromCodePoint(cp)
      i += ch.length
      if (c === "\n" && this.lastWasCR) {
        this.lastWasCR = false
        continue // \r\n is one Enter
      }
      this.lastWasCR = c === "\r"
      switch (c) {
        case "\r":
        case "\n":
          out.push(key("Enter"))
          break
        case "\x7f":
        case "\b":
          out.push(key("Backspace"))
          break
        case "\x03":
          out.push(key("Interrupt"))
          break
        case "\x04":
          out.push(key("Eof"))
          break
        case "\x01":
          out.push(key("Home"))
          break
        case "\x05":
          out.push(key("End"))
          break
        case "\x15":
          out.push(key("KillLine"))
          break
        case "\x0b":
          out.push(key("KillToEnd"))
          break
        case "\x02":
          out.push(key("Left"))
          break
        case "\x06":
          out.push(key("Right"))
          break
        case "\x10":
          out.push(key("Up"))
          break
        case "\x0e":
          out.push(key("Down"))
          break
        default:
          // C0 and C1 controls are never echoed: U+009B, say, is a CSI to a UTF-8 terminal. Invalid UTF-8
          // arrives as U+FFFD (one character) from the decoder and edits like any other.
          out.push(cp < 0x20 || (cp >= 0x80 && cp < 0xa0) ? key("Ignore") : { _tag: "Char", ch })
      }
    }
    return out
  }
}

const escapeKey = (params: string, final: string): Key => {
  switch (final) {
    case "A":
      return key("Up")
    case "B":
      return key("Down")
    case "C":
      return key("Right")
    case "D":
      return key("Left")
    case "H":
      return key("Home")
    case "F":
      return key("End")
    case "~":
      return params === "3" ? key("Delete") : params === "1" || params === "7" ? key("Home") : params === "4" || params === "8" ? key("End") : key("Ignore")
    default:
      return key("Ignore")
  }
}

export interface EditResult {
  /** Bytes to send back to the terminal (empty without echo). */
  readonly echo: string
  /** A finished line. */
  readonly line?: string
  readonly eof?: boolean
}

const left = (n: number) => (n > 0 ? `\x1b[${n}D` : "")

/** The line being typed. Positions count code points, so multi-byte characters edit as one. */
export class LineEditor {
  private chars: Array<string> = []
  private cursor = 0
  private readonly history: Array<string> = []
  private historyIndex = 0
  private draft: Array<string> = []

  constructor(private readonly echo: boolean) {}

  get text(): string {
    return this.chars.join("")
  }

  private out(s: string): EditResult {
    return { echo: this.echo ? s : "" }
  }

  /** Replaces the whole line and redraws it. */
  private replace(chars: Array<string>): EditResult {
    this.chars = chars
    this.cursor = chars.length
    return this.out(`\r${PROMPT}${chars.join("")}\x1b[K`)
  }

  apply(k: Key): EditResult {
    switch (k._tag) {
      case "Char": {
        if (this.chars.length >= MAX_LINE) return this.out("\x07")
        const tail = this.chars.slice(this.cursor).join("")
        this.chars.splice(this.cursor, 0, k.ch)
        this.cursor++
        return this.out(k.ch + tail + left(tail.length ? [...tail].length : 0))
      }
      case "Backspace": {
        if (this.cursor === 0) return this.out("")
        this.chars.splice(this.cursor - 1, 1)
        this.cursor--
        const tail = this.chars.slice(this.cursor)
        return this.out(`\b${tail.join("")} ${left(tail.length + 1)}`)
      }
      case "Delete": {
        if (this.cursor >= this.chars.length) return this.out("")
        this.chars.splice(this.cursor, 1)
        const tail = this.chars.slice(this.cursor)
        return this.out(`${tail.join("")} ${left(tail.length + 1)}`)
      }
      case "Left":
        if (this.cursor === 0) return this.out("")
        this.cursor--
        return this.out("\x1b[D")
      case "Right":
        if (this.cursor >= this.chars.length) return this.out("")
        this.cursor++
        return this.out("\x1b[C")
      case "Home": {
        const n = this.cursor
        this.cursor = 0
        return this.out(left(n))
      }
      case "End": {
        const n = this.chars.length - this.cursor
        this.cursor = this.chars.length
        return this.out(n > 0 ? `\x1b[${n}C` : "")
      }
      case "KillLine":
        return this.replace([])
      case "KillToEnd":
        this.chars = this.chars.slice(0, this.cursor)
        return this.out("\x1b[K")
      case "Interrupt":
        this.chars = []
        this.cursor = 0
        this.historyIndex = this.history.length
        return this.out(`^C\r\n${PROMPT}`)
      case "Up":
        if (this.historyIndex === 0) return this.out("")
        if (this.historyIndex === this.history.length) this.draft = this.chars
        this.historyIndex--
        return this.replace([...this.history[this.historyIndex]!])
      case "Down":
        if (this.historyIndex >= this.history.length) return this.out("")
        this.historyIndex++
        return this.replace(this.historyIndex === this.history.length ? this.draft : [...this.history[this.historyIndex]!])
      case "Enter": {
        const line = this.text
        this.chars = []
        this.cursor = 0
        if (line.trim() !== "" && this.history[this.history.length - 1] !== line) this.history.push(line)
        this.historyIndex = this.history.length
        return { echo: this.echo ? "\r\n" : "", line }
      }
      case "Eof":
        // like readline: ^D ends the session on an empty line, and deletes under the cursor otherwise
        if (this.chars.length > 0) return this.apply(key("Delete"))
        return { echo: this.echo ? "\r\n" : "", eof: true }
      case "Ignore":
        return this.out("")
    }
  }
}

export interface Terminal {
  /** True when the client asked for a pty: echo, editing and \r\n line ends. */
  pty: boolean
  columns: number
}

const END = Symbol("end")

/** Runs the shell on an accepted channel until the operator leaves; exit status 0. */
export const runShell = (channel: ServerChannel, who: Principal, term: Terminal): Effect.Effect<void, never, CommandInterpreter> =>
  Effect.gen(function* () {
    const interpreter = yield* CommandInterpreter
    const input = yield* Queue.unbounded<string | typeof END>()
    const decoder = new StringDecoder("utf8")
    channel.on("data", (b: Buffer) => void Queue.unsafeOffer(input, decoder.write(b)))
    channel.once("end", () => void Queue.unsafeOffer(input, END))
    channel.once("close", () => void Queue.unsafeOffer(input, END))
    channel.on("error", () => void Queue.unsafeOffer(input, END))

    const write = (s: string) => {
      if (s !== "" && channel.writable) channel.write(term.pty ? s.replace(/\r?\n/g, "\r\n") : s)
    }
    const reader = new KeyReader()
    const editor = new LineEditor(term.pty)

    write(PROMPT)
    let done = false
    while (!done) {
      const chunk = yield* Queue.take(input)
      if (chunk === END) break
      // The echo of a whole chunk goes out as one write (a pasted line is one packet, not one per key).
      let echo = ""
      const flush = () => {
        if (echo !== "" && channel.writable) channel.write(echo) // already terminal-formatted
        echo = ""
      }
      for (const k of reader.push(chunk)) {
        const r = editor.apply(k)
        echo += r.echo
        if (r.eof) {
          done = true
          break
        }
        if (r.line !== undefined) {
          const line = r.line.trim()
          if (line === "exit" || line === "quit") {
            done = true
            break
          }
          flush()
          if (line !== "") {
            const result = yield* interpreter.run(line, who)
            write(result.output === "" || result.output.endsWith("\n") ? result.output : result.output + "\n")
          }
          write(PROMPT)
        }
      }
      flush()
    }
    if (!term.pty && channel.writable) channel.write("\n")
    channel.exit(0)
    channel.end()
  })
