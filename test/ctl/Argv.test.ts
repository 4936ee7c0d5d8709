// deployctl's own command-line parser: Go-style flags anywhere, and errors that say what to type.
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { closest, parseArgv, wantsJson } from "../../src/ctl/Argv.js"
import { argvSpec } from "../../src/ctl/Cli.js"

const ok = (...argv: Array<string>) => {
  const r = parseArgv(argvSpec, argv)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}
const err = (...argv: Array<string>) => {
  const r = parseArgv(argvSpec, argv)
  if (Either.isRight(r)) throw new Error(`expected an error for ${argv.join(" ")}`)
  return r.left.message
}
const run = (...argv: Array<string>) => {
  const r = ok(...argv)
  if (r._tag !== "Run") throw new Error(`not a command: ${r._tag}`)
  return { command: r.command, globals: Object.fromEntries(r.globals), strings: Object.fromEntries(r.flags.strings), bools: [...r.flags.bools], lists: Object.fromEntries(r.flags.lists) }
}

describe("Argv.parseArgv", () => {
  it("takes -name x, -name=x, --name x and --name=x, keeping everything after the first =", () => {
    expect(run("showconf", "-name", "p").strings).toEqual({ name: "p" })
    expect(run("showconf", "--name=a=b").strings).toEqual({ name: "a=b" })
    expect(run("addconf", "-layer", "a:1", "--layer=b:2").lists).toEqual({ layer: ["a:1", "b:2"] })
  })

  it("takes flags before the command too, and global flags anywhere", () => {
    expect(run("-name", "project1", "showconf", "-v")).toEqual({ command: "showconf", globals: {}, strings: { name: "project1" }, bools: ["v"], lists: {} })
    expect(run("-addr", "a:1", "components", "-key", "k", "-r", "prod").globals).toEqual({ addr: "a:1", key: "k", r: "prod" })
  })

  it("bool flags: -json, -force=true, -force=false", () => {
    expect(run("delconf", "-name", "p", "-force=false").bools).toEqual([])
    expect(run("delconf", "-name", "p", "-force=true").bools).toEqual(["force"])
    expect(err("delconf", "-force=maybe")).toContain('invalid boolean value "maybe" for -force')
  })

  it("-version is the command's flag where it has one, the program's version elsewhere", () => {
    expect(ok("--version")).toEqual({ _tag: "Version" })
    expect(ok("-key", "k", "-version")).toEqual({ _tag: "Version" })
    expect(ok("components", "--version")).toEqual({ _tag: "Version" })
    expect(run("delver", "-name", "c", "-version", "v1").strings).toEqual({ name: "c", version: "v1" })
  })

  it("help: -h, --help, help, help <command>, <command> -h", () => {
    expect(ok("-h")).toEqual({ _tag: "Help", command: undefined })
    expect(ok("help")).toEqual({ _tag: "Help", command: undefined })
    expect(ok("help", "addver")).toEqual({ _tag: "Help", command: "addver" })
    expect(ok("addver", "--help")).toEqual({ _tag: "Help", command: "addver" })
    expect(ok("-key", "k", "changeconf", "-name", "-h", "--help")).toEqual({ _tag: "Help", command: "changeconf" }) // the first -h is -name's value
  })

  it("--completions takes one of the shells it can write", () => {
    expect(ok("--completions", "bash")).toEqual({ _tag: "Completions", shell: "bash" })
    expect(ok("-completions=zsh")).toEqual({ _tag: "Completions", shell: "zsh" })
    expect(err("--completions", "powershell")).toBe('--completions: no completions for "powershell"; choose one of sh, bash, fish, zsh')
  })

  it("unknown commands and flags say what to type, with did you mean", () => {
    expect(err("shwoconf", "-name", "x")).toBe('unknown command "shwoconf"; did you mean showconf? (deployctl help lists the commands)')
    expect(err("frobnicate")).toBe('unknown command "frobnicate" (deployctl help lists the commands)')
    expect(err("help", "adver")).toContain("did you mean addver?")
    expect(err("showconf", "-nmae", "x")).toBe("flag provided but not defined: -nmae (showconf); did you mean -name? (see deployctl showconf -h)")
    expect(err("showconf", "-hash", "x")).toBe("flag provided but not defined: -hash (showconf) (see deployctl showconf -h)")
    expect(err("addver", "-hash", "x")).toContain("-hash (addver)")
    expect(err("-bogus")).toBe("flag provided but not defined: -bogus (see deployctl -h)")
    expect(err("-force", "showconf", "-name", "p")).toBe("flag provided but not defined: -force (showconf) (see deployctl showconf -h)")
    expect(err("--wizard")).toContain("flag provided but not defined: -wizard")
    expect(err("--log-level", "debug", "components")).toContain("flag provided but not defined: -log-level")
    expect(err("showconf", "-name")).toBe("flag needs an argument: -name (write -name VALUE)")
    expect(err()).toBe("no command given: deployctl help lists the commands, deployctl -h explains the flags")
  })

  it("positional words are refused, suggesting the flag they were probably meant for", () => {
    expect(err("showconf", "project1")).toBe('unexpected argument "project1": showconf takes flags only; did you mean -name project1? (see deployctl showconf -h)')
    expect(err("showconf", "-name", "p", "extra")).toBe('unexpected argument "extra": showconf takes flags only (see deployctl showconf -h)')
    expect(err("showconf", "--", "-name")).toContain('unexpected argument "-name"')
  })

  it("finds close spellings only", () => {
    expect(closest("bumconf", ["bumpconf", "showconf"])).toBe("bumpconf")
    expect(closest("x", ["addver", "delver"])).toBeUndefined()
  })

  it("knows when errors should be JSON", () => {
    expect(wantsJson(["showconf", "-json", "-name", "x"])).toBe(true)
    expect(wantsJson(["showconf", "--json=false"])).toBe(false)
    expect(wantsJson(["showconf"])).toBe(false)
  })
})
