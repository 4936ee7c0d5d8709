// deployctl's configuration file: the TOML subset, its one-line errors, and precedence.
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { configPath, type CtlConfig, parseConfig, resolveGlobals } from "../../src/ctl/ConfigFile.js"

const F = "/home/u/.config/deploy-tools/deployctl.toml"
const parsed = (text: string) => {
  const r = parseConfig(F, text)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}
const problem = (text: string) => {
  const r = parseConfig(F, text)
  if (Either.isRight(r)) throw new Error("expected an error")
  return r.left.message
}

describe("deployctl.toml", () => {
  it("lives under XDG_CONFIG_HOME, else ~/.config", () => {
    expect(configPath({ home: "/home/u" })).toBe(F)
    expect(configPath({ xdgConfigHome: "/x", home: "/home/u" })).toBe("/x/deploy-tools/deployctl.toml")
  })

  it("reads tables, basic and literal strings, comments and a default", () => {
    const c = parsed(
      `# mine\ndefault = "prod"\n\n[registry.prod]  # main\naddr = "reg:2022"\nfingerprint = "SHA256:a#b"\nkey = 'keys/k'\n[registry."dev box"]\naddr = "a\\"b"\n`
    )
    expect(c.default).toBe("prod")
    expect(c.registries.get("prod")).toEqual({ addr: "reg:2022", fingerprint: "SHA256:a#b", key: "/home/u/.config/deploy-tools/keys/k" })
    expect(c.registries.get("dev box")).toEqual({ addr: 'a"b' })
  })

  it("names file and line of what it does not understand", () => {
    expect(problem(`[registry.a]\naddr = reg`)).toBe(`${F}:2: the value of addr should be a string in double quotes, got reg`)
    expect(problem(`[servers.a]`)).toBe(`${F}:1: expected a table [registry.NAME], got "[servers.a]"`)
    expect(problem(`[registry.a]\nport = "1"`)).toBe(`${F}:2: unknown key "port" (a registry has addr, fingerprint, key)`)
    expect(problem(`addr = "x"`)).toContain(`${F}:1: unknown setting "addr" at the top`)
    expect(problem(`[registry.a]\n[registry.a]`)).toBe(`${F}:2: registry "a" is defined twice`)
    expect(problem(`just words`)).toBe(`${F}:1: expected key = "value", got "just words"`)
    expect(problem(`default = "nope"`)).toBe(`${F}: default = "nope" names no [registry.nope] table`)
  })

  it("flag > -r entry > environment > default entry, for each setting separately", () => {
    const config: CtlConfig = parsed(`default = "d"\n[registry.d]\naddr = "d:1"\nfingerprint = "FP-d"\nkey = "/kd"\n[registry.p]\naddr = "p:1"\n`)
    const r = (flags: Record<string, string>, env: Record<string, string> = {}) =>
      Either.getOrThrow(resolveGlobals({ flags: new Map(Object.entries(flags)), env, file: F, config }))
    expect(r({})).toEqual({ addr: "d:1", fp: "FP-d", key: "/kd" })
    expect(r({}, { addr: "e:1" })).toEqual({ addr: "e:1", fp: "FP-d", key: "/kd" })
    expect(r({ r: "p" }, { addr: "e:1", key: "/ke" })).toEqual({ addr: "p:1", fp: "FP-d", key: "/ke" })
    expect(r({ r: "p", addr: "f:1" })).toMatchObject({ addr: "f:1" })
    expect(Either.isLeft(resolveGlobals({ flags: new Map([["r", "x"]]), env: {}, file: F, config }))).toBe(true)
  })
})
