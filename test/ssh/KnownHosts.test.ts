import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { check, hostName, load, matchesHost, parse } from "../../src/ssh/KnownHosts.js"

const run = promisify(execFile)
let dir: string
let keyA: { line: string; blob: Buffer }
let keyB: { line: string; blob: Buffer }

const makeHostKey = async (name: string) => {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, name)])
  const line = (await readFile(path.join(dir, `${name}.pub`), "utf8")).trim()
  const [type, b64] = line.split(" ")
  return { line: `${type} ${b64}`, blob: Buffer.from(b64!, "base64") }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "knownhosts-"))
  keyA = await makeHostKey("a")
  keyB = await makeHostKey("b")
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe("KnownHosts", () => {
  it("names hosts as OpenSSH does", () => {
    expect(hostName("Example.COM", 22)).toBe("example.com")
    expect(hostName("127.0.0.1", 2022)).toBe("[127.0.0.1]:2022")
  })

  it("plain entries, comma lists, comments and junk lines", () => {
    const entries = parse(
      [
        "# a comment",
        "",
        `reg.example.com,10.0.0.5 ${keyA.line} comment here`,
        "not a valid line",
        `other.example.com ${keyB.line}`,
        "@weird-marker host ssh-ed25519 AAAA"
      ].join("\n")
    )
    expect(entries).toHaveLength(2)
    expect(entries[0]!.line).toBe(3)
    expect(check(entries, "reg.example.com", 22, keyA.blob)).toBe("trusted")
    expect(check(entries, "10.0.0.5", 22, keyA.blob)).toBe("trusted")
    expect(check(entries, "REG.example.com", 22, keyA.blob)).toBe("trusted")
    expect(check(entries, "reg.example.com", 22, keyB.blob)).toBe("mismatch")
    expect(check(entries, "nowhere.example.com", 22, keyA.blob)).toBe("unknown")
    // the port matters: a port-22 line says nothing about port 2022
    expect(check(entries, "reg.example.com", 2022, keyA.blob)).toBe("unknown")
  })

  it("[host]:port entries", () => {
    const entries = parse(`[127.0.0.1]:2022 ${keyA.line}\n[127.0.0.1]:2023 ${keyB.line}\n`)
    expect(check(entries, "127.0.0.1", 2022, keyA.blob)).toBe("trusted")
    expect(check(entries, "127.0.0.1", 2022, keyB.blob)).toBe("mismatch")
    expect(check(entries, "127.0.0.1", 2023, keyB.blob)).toBe("trusted")
    expect(check(entries, "127.0.0.1", 22, keyA.blob)).toBe("unknown")
  })

  it("wildcards and negation", () => {
    const entries = parse(`*.example.com,!bad.example.com ${keyA.line}\n[web?.example.org]:2022 ${keyB.line}\n`)
    expect(matchesHost(entries[0]!, "reg.example.com")).toBe(true)
    expect(matchesHost(entries[0]!, "bad.example.com")).toBe(false)
    expect(matchesHost(entries[0]!, "example.com")).toBe(false)
    expect(check(entries, "web1.example.org", 2022, keyB.blob)).toBe("trusted")
    expect(check(entries, "web12.example.org", 2022, keyB.blob)).toBe("unknown")
  })

  it("hashed entries written by ssh-keygen -H", async () => {
    const file = path.join(dir, "known_hosts_hashed")
    await writeFile(file, `[127.0.0.1]:2022 ${keyA.line}\nreg.example.com ${keyB.line}\n`)
    await run("ssh-keygen", ["-H", "-f", file])
    const text = await readFile(file, "utf8")
    expect(text).not.toContain("127.0.0.1") // really hashed
    expect(text).toMatch(/^\|1\|/m)
    const entries = parse(text)
    expect(entries).toHaveLength(2)
    expect(check(entries, "127.0.0.1", 2022, keyA.blob)).toBe("trusted")
    expect(check(entries, "127.0.0.1", 2022, keyB.blob)).toBe("mismatch")
    expect(check(entries, "127.0.0.1", 2023, keyA.blob)).toBe("unknown")
    expect(check(entries, "reg.example.com", 22, keyB.blob)).toBe("trusted")
    expect(check(entries, "reg.example.org", 22, keyB.blob)).toBe("unknown")
  })

  it("@revoked refuses a key even when another line trusts it; @cert-authority neither trusts nor refuses", () => {
    const entries = parse(
      [`[h]:2022 ${keyA.line}`, `@revoked * ${keyA.line}`, `@cert-authority *.example.com ${keyB.line}`].join("\n")
    )
    expect(check(entries, "h", 2022, keyA.blob)).toBe("revoked")
    expect(check(entries, "reg.example.com", 22, keyB.blob)).toBe("unknown")
  })

  it("load: a missing file is empty; a real file parses", async () => {
    expect(await Effect.runPromise(load(path.join(dir, "missing")))).toEqual([])
    const file = path.join(dir, "kh")
    await writeFile(file, `[127.0.0.1]:9 ${keyA.line}\n`)
    const entries = await Effect.runPromise(load(file))
    expect(check(entries, "127.0.0.1", 9, keyA.blob)).toBe("trusted")
    const dirAsFile = await Effect.runPromise(Effect.flip(load(dir)))
    expect(dirAsFile.message).toContain("cannot read")
  })
})
