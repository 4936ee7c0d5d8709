// The command tree without a network: a recording Remote checks what each command line becomes.
import type { SignArgs } from "../../src/ctl/Sign.js"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ConfigProvider, Console, Effect, Layer, Option } from "effect"
import { describe, expect, it } from "vitest"
import { main } from "../../src/ctl/Cli.js"
import { type Globals, Remote } from "../../src/ctl/Remote.js"
import { payload } from "../../src/operator/OperatorClient.js"
import { catalogue, type Command } from "../../src/domain/Commands.js"
import { split } from "../../src/domain/ShellWords.js"

interface Call {
  globals: { addr?: string; fp?: string; key?: string }
  command?: Command
  addver?: { name: string; version: string; file: string; json?: boolean }
  sign?: SignArgs
  statusWait?: { name: string; json: boolean }
  web?: { listen: string; listenPublic: boolean; open: boolean }
  events?: boolean
}

const plain = (g: Globals) => ({
  ...Option.match(g.addr, { onNone: () => ({}), onSome: (addr) => ({ addr }) }),
  ...Option.match(g.fp, { onNone: () => ({}), onSome: (fp) => ({ fp }) }),
  ...Option.match(g.key, { onNone: () => ({}), onSome: (key) => ({ key }) })
})

const runCli = async (argv: Array<string>, env: Record<string, string> = {}) => {
  const calls: Array<Call> = []
  let err = ""
  let out = ""
  const remote = Layer.succeed(Remote, {
    run: (globals, command) => Effect.sync(() => void calls.push({ globals: plain(globals), command })),
    addver: (globals, args) => Effect.sync(() => void calls.push({ globals: plain(globals), addver: { ...args } })),
    sign: (globals, args, after) => Effect.sync(() => void calls.push({ globals: plain(globals), sign: { ...args }, ...(after ? { command: after } : {}) })),
    statusWait: (globals, name, json) => Effect.sync(() => void calls.push({ globals: plain(globals), statusWait: { name, json } })),
    web: (globals, args) => Effect.sync(() => void calls.push({ globals: plain(globals), web: { ...args } })),
    events: (globals) => Effect.sync(() => void calls.push({ globals: plain(globals), events: true }))
  })
  const sink = { write: (c: Uint8Array | string, cb?: () => void) => ((err += String(c)), cb?.(), true) }
  const quiet = await Effect.runPromise(
    Console.consoleWith((base) =>
      Effect.succeed<Console.Console>({ ...base, log: (...a) => Effect.sync(() => void (out += a.join(" ") + "\n")), error: () => Effect.void })
    )
  )
  const code = await main(argv, { stdout: sink, stderr: { isTTY: false, ...sink } }).pipe(
    Effect.withConsole(quiet),
    Effect.provide(remote),
    Effect.provide(NodeContext.layer),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries({ HOME: "/nonexistent", ...env })))),
    Effect.runPromise
  )
  return { code, calls, err, out }
}

const H = "AB".repeat(32)

describe("deployctl command tree", () => {
  it("Go-style flags become typed catalogue commands", async () => {
    const r = await runCli(["addconf", "-name", "p 1", "-layer", "code:v1", "-layer=config:v 2"])
    expect(r.code).toBe(0)
    expect(r.calls[0]!.command).toEqual({
      _tag: "addconf",
      name: "p 1",
      layers: [
        { component: "code", version: "v1" },
        { component: "config", version: "v 2" }
      ]
    })
  })

  it("booleans, optional hashes (lower-cased) and -v", async () => {
    const [a, b, c] = await Promise.all([
      runCli(["delconf", "-name", "p", "-force"]),
      runCli(["rollback", "-name=p", `-to=${H}`]),
      runCli(["showconf", "-v", "-json", "--name", "p"])
    ])
    expect(a.calls[0]!.command).toEqual({ _tag: "delconf", name: "p", force: true })
    expect(b.calls[0]!.command).toEqual({ _tag: "rollback", name: "p", to: H.toLowerCase() })
    expect(c.calls[0]!.command).toEqual({ _tag: "showconf", name: "p", verbose: true, json: true })
  })

  it("global flags come from the environment, flags win, and may follow the subcommand", async () => {
    const env = { DEPLOYCTL_ADDR: "env:1", DEPLOYCTL_FINGERPRINT: "SHA256:env" }
    const fromEnv = await runCli(["components"], env)
    expect(fromEnv.calls[0]!.globals).toEqual({ addr: "env:1", fp: "SHA256:env" })
    const flags = await runCli(["components", "-addr", "flag:2", "-key=k"], env)
    expect(flags.calls[0]!.globals).toEqual({ addr: "flag:2", fp: "SHA256:env", key: "k" })
  })

  it("addver takes -file and goes to Remote.addver, not through validate's -hash", async () => {
    const r = await runCli(["addver", "-name", "config", "-version", "v02", "-file", "config_v2.tar.gz"])
    expect(r.calls).toEqual([{ globals: {}, addver: { name: "config", version: "v02", file: "config_v2.tar.gz", json: false } }])
  })

  it("status -wait goes to Remote.statusWait and needs -name; status alone is a catalogue command", async () => {
    expect((await runCli(["status", "-name", "p", "-wait", "-json"])).calls).toEqual([{ globals: {}, statusWait: { name: "p", json: true } }])
    expect((await runCli(["status"])).calls).toEqual([{ globals: {}, command: { _tag: "status", json: false } }])
    const r = await runCli(["status", "-wait"])
    expect(r.code).toBe(2)
    expect(r.calls).toEqual([])
  })

  it("local validation: nothing is sent for an invalid command", async () => {
    const bad = await Promise.all([
      runCli(["addconf", "-name", "p", "-layer", "nocolon"]),
      runCli(["showcomp", "-name", "a:b"]),
      runCli(["changeconf", "-name", "p", "-component", "c"]),
      runCli(["rollback", "-name", "p", "-to", "xyz"])
    ])
    for (const r of bad) {
      expect(r.code).toBe(2)
      expect(r.calls).toEqual([])
      expect(r.err).toMatch(/^deployctl: .+\n$/)
    }
    expect(bad[1]!.err).toBe("deployctl: name cannot contain : symbol\n")
  })

  it("-h, -help and --help work on deployctl and on every subcommand, sending nothing", async () => {
    const results = await Promise.all([
      runCli(["-h"]),
      runCli(["-help"]),
      ...catalogue.map((c, i) => runCli([c.name, ["-h", "-help", "--help"][i % 3]!]))
    ])
    for (const r of results) expect({ code: r.code, calls: r.calls }).toEqual({ code: 0, calls: [] })
  })

  it("help reads well: program name in every usage line, each flag once with its description, no type boilerplate", async () => {
    let out = ""
    const capture = Console.consoleWith((base) =>
      Effect.succeed<Console.Console>({ ...base, log: (...a) => Effect.sync(() => void (out += a.join(" ") + "\n")) })
    )
    const helpOf = async (...argv: Array<string>) => {
      out = ""
      const code = await main(argv, { stdout: { write: () => true }, stderr: { isTTY: false, write: () => true } }).pipe(
        (p) => Effect.flatMap(capture, (c) => Effect.withConsole(p, c)),
        Effect.provide(Layer.succeed(Remote, { run: () => Effect.die("sent"), addver: () => Effect.die("sent"), sign: () => Effect.die("sent"), statusWait: () => Effect.die("sent"), web: () => Effect.die("sent"), events: () => Effect.die("sent") })),
        Effect.provide(NodeContext.layer),
        Effect.runPromise
      )
      return { code, out }
    }
    const top = await helpOf("-h")
    expect(top.code).toBe(0)
    expect(top.out).toMatch(/^deployctl \S+: /)
    expect(top.out).toContain("Usage: deployctl [-r name] [-addr host:port] [-fp SHA256:...] [-key file] <command> [flags]")
    for (const c of catalogue) expect(top.out).toMatch(new RegExp(`^  ${c.name} +\\S`, "m"))
    const sub = await helpOf("-addr", "x", "changeconf", "-name", "-h", "--help") // "-h" here is -name's value
    expect(sub.code).toBe(0)
    expect(sub.out).toContain("Usage: deployctl [global flags] changeconf [flags]\n\nupdate single layer of configuration to specific version\n")
    for (const f of ["name", "component", "version", "expect"]) expect(sub.out.match(new RegExp(`^  -${f} string\\n    \\t\\S`, "gm"))).toHaveLength(1)
    const addver = await helpOf("addver", "-h")
    expect(addver.out).toContain("  -file string\n")
    expect(addver.out).not.toContain("-hash")
    for (const r of [top, sub, addver]) {
      expect(r.out).not.toMatch(/user-defined|true or false value|\$ changeconf/)
      expect(r.out).not.toContain("\x1b[")
    }
  })

  it("every error of the command-line layer is one deployctl: line saying what to type (exit 2), JSON with -json", async () => {
    const cases: Array<[Array<string>, RegExp]> = [
      [["showconf", "project1"], /^deployctl: unexpected argument "project1": showconf takes flags only; did you mean -name project1\?/],
      [["shwoconf"], /^deployctl: unknown command "shwoconf"; did you mean showconf\?/],
      [["showconf", "-nmae", "p"], /^deployctl: flag provided but not defined: -nmae \(showconf\); did you mean -name\?/],
      [["--completions", "powershell"], /^deployctl: --completions: no completions for "powershell"; choose one of sh, bash, fish, zsh\n$/],
      [["--wizard"], /^deployctl: flag provided but not defined: -wizard/],
      [["--log-level", "debug", "components"], /^deployctl: flag provided but not defined: -log-level/],
      [["help", "nope"], /^deployctl: unknown command "nope"/]
    ]
    for (const [argv, re] of cases) {
      const r = await runCli(argv)
      expect({ argv, code: r.code, calls: r.calls }).toEqual({ argv, code: 2, calls: [] })
      expect(r.err.split("\n")).toHaveLength(2) // one line
      expect(r.err).toMatch(re)
    }
    const j = await runCli(["showconf", "-json", "project1"])
    expect(j.code).toBe(2)
    expect(JSON.parse(j.err)).toEqual({ error: expect.stringContaining('unexpected argument "project1"') })
    const v = await runCli(["showcomp", "-json", "-name", "a:b"])
    expect(JSON.parse(v.err)).toEqual({ error: "name cannot contain : symbol" })
  })

  it("-name before the command, help <command>, deployctl help and --version", async () => {
    const before = await runCli(["-name", "project1", "showconf"])
    expect(before.calls[0]!.command).toEqual({ _tag: "showconf", name: "project1", verbose: false, json: false })
    const helpAddver = await runCli(["help", "addver"])
    expect(helpAddver.code).toBe(0)
    expect(helpAddver.out).toContain("Usage: deployctl [global flags] addver [flags]")
    const help = await runCli(["help"])
    expect(help.code).toBe(0)
    expect(help.out).toContain("Usage: deployctl [-r name] [-addr host:port]")
    expect(help.out).not.toContain("addver -name")
    const version = await runCli(["--version"])
    expect(version.out).toMatch(/^deployctl \d+\.\d+\.\d+\n$/)
    expect((await runCli(["-h"])).out).toMatch(/^deployctl \d+\.\d+\.\d+: /)
  })

  it("the exec payload quotes every awkward word so the registry splits it back exactly (fault 7)", () => {
    const cmd: Command = {
      _tag: "addconf",
      name: `it's "p3 x" $HOME \`id\`` as never,
      layers: [{ component: "a b" as never, version: "v'1" as never }]
    }
    const words = split(payload(cmd))
    expect(words._tag).toBe("Right")
    if (words._tag === "Right") expect(words.right).toEqual(["addconf", `-name=it's "p3 x" $HOME \`id\``, "-layer=a b:v'1"])
  })
})
