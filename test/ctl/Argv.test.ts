import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { normalize } from "../../src/ctl/Argv.js"
import { argvSpec } from "../../src/ctl/Cli.js"

const norm = (...argv: Array<string>) => normalize(argvSpec, argv)
const ok = (...argv: Array<string>) => Either.getOrThrow(norm(...argv))
const err = (...argv: Array<string>) => {
  const r = norm(...argv)
  if (Either.isRight(r)) throw new Error(`expected an error, got ${JSON.stringify(r.right)}`)
  return r.left
}

describe("Argv.normalize", () => {
  it("turns Go-style single-dash flags into --name value", () => {
    expect(ok("addver", "-name", "config", "-version", "v02", "-file", "config_v2.tar.gz")).toEqual([
      "addver", "--name", "config", "--version", "v02", "--file", "config_v2.tar.gz"
    ])
  })

  it("splits -name=x and --name=x, keeping everything after the first =", () => {
    expect(ok("changeconf", "-name=p=1", "--component=c", "-version", "v")).toEqual([
      "changeconf", "--name", "p=1", "--component", "c", "--version", "v"
    ])
  })

  it("keeps repeated list flags in order, in either form", () => {
    expect(ok("addconf", "-name", "p", "-layer=code:v1", "--layer", "config:v2", "-layer", "x:y")).toEqual([
      "addconf", "--name", "p", "--layer", "code:v1", "--layer", "config:v2", "--layer", "x:y"
    ])
  })

  it("moves global flags in front of the subcommand, wherever they were", () => {
    expect(ok("showconf", "-name", "p1", "-addr", "h:1", "-fp=SHA256:x", "--key", "k")).toEqual([
      "--addr", "h:1", "--fp", "SHA256:x", "--key", "k", "showconf", "--name", "p1"
    ])
    expect(ok("-addr=h:1", "components")).toEqual(["--addr", "h:1", "components"])
  })

  it("keeps one-letter flags single-dash: -v, -h", () => {
    expect(ok("showconf", "-name", "p", "-v")).toEqual(["showconf", "--name", "p", "-v"])
    expect(ok("showconf", "--v")).toEqual(["showconf", "-v"])
    expect(ok("showconf", "-h")).toEqual(["showconf", "-h"])
    expect(ok("-h")).toEqual(["-h"])
    expect(ok("showconf", "-help")).toEqual(["showconf", "--help"])
  })

  it("bool flags: -json, -force=true, -force=false", () => {
    expect(ok("components", "-json")).toEqual(["components", "--json"])
    expect(ok("delconf", "-name", "p", "-force=true")).toEqual(["delconf", "--name", "p", "--force"])
    expect(ok("delconf", "-name", "p", "-force=false")).toEqual(["delconf", "--name", "p"])
    expect(err("delconf", "-force=maybe").message).toContain('invalid boolean value "maybe"')
  })

  it("values may start with a dash or contain spaces and quotes", () => {
    expect(ok("showconf", "-name", "-x")).toEqual(["showconf", "--name", "-x"])
    expect(ok("showconf", "-name", `it's "p3 x"`)).toEqual(["showconf", "--name", `it's "p3 x"`])
  })

  it("-version is addver's flag after the subcommand, the program's version before it", () => {
    expect(ok("--version")).toEqual(["--version"])
    expect(ok("delver", "-name", "c", "-version", "v1")).toEqual(["delver", "--name", "c", "--version", "v1"])
  })

  it("without a subcommand, @effect/cli's own flags stand alone (globals dropped)", () => {
    expect(ok("-key", "k", "-h")).toEqual(["-h"])
    expect(ok("-addr", "a:1", "--completions", "fish")).toEqual(["--completions", "fish"])
    expect(ok("-key", "k", "-version")).toEqual(["--version"])
    expect(ok("-key", "k", "changeconf", "-h")).toEqual(["--key", "k", "changeconf", "-h"])
  })

  it("passes --completions through", () => {
    expect(ok("-completions", "bash")).toEqual(["--completions", "bash"])
    expect(ok("--completions=zsh")).toEqual(["--completions", "zsh"])
  })

  it("refuses unknown subcommands, unknown flags and missing values", () => {
    const u = err("nope", "-name", "x")
    expect(u._tag).toBe("UnknownCommand")
    expect(u.message).toBe('unknown command "nope"')
    expect(err("showconf", "-hash", "x").message).toBe("flag provided but not defined: -hash (showconf)")
    expect(err("addver", "-hash", "x").message).toContain("-hash") // deployctl's addver takes -file
    expect(err("showconf", "-name").message).toBe("flag needs an argument: -name")
    expect(err("-bogus").message).toBe("flag provided but not defined: -bogus")
  })

  it("leaves positional words after the subcommand for @effect/cli to refuse", () => {
    expect(ok("showconf", "-name", "p", "extra")).toEqual(["showconf", "--name", "p", "extra"])
    expect(ok("showconf", "--", "-name")).toEqual(["showconf", "-name"])
  })
})
