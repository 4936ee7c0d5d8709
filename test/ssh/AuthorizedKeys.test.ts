import { execFile } from "node:child_process"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseAuthorizedKeys } from "../../src/ssh/AuthorizedKeys.js"
import { keygenFingerprint, makeKey, tempDir } from "../support/keys.js"

const run = promisify(execFile)
let dir: string
const pub: Record<string, { line: string; fp: string }> = {}

beforeAll(async () => {
  dir = await tempDir("authkeys-")
  const ed = await makeKey(dir, "ed", "alice@laptop")
  pub.ed = { line: ed.publicLine, fp: ed.fingerprint }
  for (const [name, args] of [["rsa", ["-t", "rsa", "-b", "2048"]], ["ecdsa", ["-t", "ecdsa", "-b", "256"]]] as const) {
    await run("ssh-keygen", ["-q", ...args, "-N", "", "-C", `${name} key`, "-f", path.join(dir, name)])
    pub[name] = {
      line: (await fs.readFile(path.join(dir, `${name}.pub`), "utf8")).trim(),
      fp: await keygenFingerprint(path.join(dir, `${name}.pub`))
    }
  }
})
afterAll(() => fs.rm(dir, { recursive: true, force: true }))

describe("parseAuthorizedKeys", () => {
  it("reads ed25519, rsa and ecdsa keys, skipping comments and blank lines", () => {
    const text = `# operators\n\n${pub.ed!.line}\n   \n${pub.rsa!.line}\r\n${pub.ecdsa!.line}\n# end`
    const { keys, problems } = parseAuthorizedKeys(text)
    expect(problems).toEqual([])
    expect(keys.map((k) => k.type)).toEqual(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"])
    expect(keys.map((k) => k.fingerprint)).toEqual([pub.ed!.fp, pub.rsa!.fp, pub.ecdsa!.fp])
    expect(keys[0]!.comment).toBe("alice@laptop")
    expect(keys[1]!.comment).toBe("rsa key")
    expect(keys.map((k) => k.line)).toEqual([3, 5, 6])
    expect(keys[0]!.options).toEqual([])
  })

  it("keeps options before the key, including quoted values with commas and spaces", () => {
    const line = `restrict,from="10.0.0.1,192.168.0.0/16",command="echo \\"hi there\\"",no-pty ${pub.ed!.line}`
    const { keys, problems } = parseAuthorizedKeys(line)
    expect(problems).toEqual([])
    expect(keys).toHaveLength(1)
    expect(keys[0]!.options).toEqual([
      { name: "restrict" },
      { name: "from", value: "10.0.0.1,192.168.0.0/16" },
      { name: "command", value: 'echo "hi there"' },
      { name: "no-pty" }
    ])
    expect(keys[0]!.fingerprint).toBe(pub.ed!.fp)
    expect(keys[0]!.comment).toBe("alice@laptop")
  })

  it("reports lines it cannot use instead of trusting them", () => {
    const [type, b64] = pub.ed!.line.split(" ")
    const text = [
      "ssh-ed25519",
      `ssh-ed25519 !!notbase64!!`,
      `ssh-rsa ${b64} claims rsa`,
      `from="unterminated ${type} ${b64}`,
      `bogus-type ${b64}`,
      pub.ed!.line
    ].join("\n")
    const { keys, problems } = parseAuthorizedKeys(text)
    expect(keys.map((k) => k.line)).toEqual([6])
    expect(problems.map((p) => p.line)).toEqual([1, 2, 3, 4, 5])
    expect(problems[2]!.message).toMatch(/does not match|cannot parse ssh-rsa/)
  })

  it("finds nothing in an empty or comment-only file", () => {
    expect(parseAuthorizedKeys("").keys).toEqual([])
    expect(parseAuthorizedKeys("# nobody\n\n").keys).toEqual([])
  })
})
