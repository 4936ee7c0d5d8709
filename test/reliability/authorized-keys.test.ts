// Random authorized_keys input never crashes the parser, every line is accounted for (a key or a
// problem), and a mutated line is never taken for a different key than the one it spells.
import { FastCheck as fc } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseAuthorizedKeys } from "../../src/ssh/AuthorizedKeys.js"
import { fingerprint } from "../../src/ssh/Fingerprint.js"

let dir: string
let valid: Array<string>

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "rel-authkeys-"))
  valid = ["ed25519", "ecdsa", "rsa"].map((t) => {
    const f = path.join(dir, t)
    execFileSync("ssh-keygen", ["-q", "-t", t, ...(t === "rsa" ? ["-b", "1024"] : []), "-N", "", "-C", `${t}@test`, "-f", f])
    return readFileSync(`${f}.pub`, "utf8").trim()
  })
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const counted = (text: string) =>
  text.split(/\r?\n/).filter((l) => l.trim() !== "" && !l.trim().startsWith("#")).length

describe("parseAuthorizedKeys under random input", () => {
  it("never throws and accounts for every line (random text)", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.base64String()), { maxLength: 8 }), (lines) => {
        const text = lines.join("\n")
        const r = parseAuthorizedKeys(text)
        expect(r.keys.length + r.problems.length).toBe(counted(text))
      }),
      { numRuns: 500 }
    )
  })

  it("never throws on mutated real lines; a key it returns is the key its base64 spells", () => {
    const alphabet = [..."AZaz09+/=\" ,\\#\t\u0000é-"]
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 2 }), fc.constantFrom(...alphabet)), { minLength: 1, maxLength: 6 }),
        fc.constantFrom("", "restrict ", 'from="10.0.0.0/8,::1" ', 'command="echo \\"hi\\"",no-pty ', 'bad="unterminated ', "x=y "),
        (which, edits, prefix) => {
          let line = prefix + valid[which]!
          for (const [pos, op, ch] of edits) {
            const p = pos % (line.length + 1)
            line = op === 0 ? line.slice(0, p) + ch + line.slice(p) : op === 1 ? line.slice(0, p) + line.slice(p + 1) : line.slice(0, p) + ch + line.slice(p + 1)
          }
          const r = parseAuthorizedKeys(line)
          expect(r.keys.length + r.problems.length).toBe(counted(line))
          for (const k of r.keys) {
            expect(k.fingerprint).toBe(fingerprint(k.data))
            // The blob starts with its own type name.
            expect(k.data.subarray(4, 4 + k.data.readUInt32BE(0)).toString("latin1")).toBe(k.type)
          }
        }
      ),
      { numRuns: 1500 }
    )
  })

  it("keeps the key of a well-formed line with options", () => {
    const r = parseAuthorizedKeys(`restrict,from="10.0.0.1" ${valid[0]}\n# comment\n\n${valid[1]}\n`)
    expect(r.problems).toEqual([])
    expect(r.keys.map((k) => k.options.map((o) => o.name))).toEqual([["restrict", "from"], []])
  })
})
