import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck as fc } from "effect"
import {
  catalogue,
  type Command,
  commandList,
  commandUsage,
  type LayerRef,
  parse,
  specOf,
  toArgv
} from "../../src/domain/Commands.js"
import { ComponentName, ConfigurationName, Sha256, Version } from "../../src/domain/Names.js"
import { join, split } from "../../src/domain/ShellWords.js"

const H = "a".repeat(64)

const command = (argv: ReadonlyArray<string>): Command => {
  const r = parse(argv)
  if (Either.isLeft(r)) throw new Error(`unexpected error: ${r.left.message}`)
  if (r.right._tag !== "Command") throw new Error("expected a command")
  return r.right.command
}

const errorOf = (argv: ReadonlyArray<string>): string => {
  const r = parse(argv)
  if (Either.isRight(r)) throw new Error(`expected an error, got ${JSON.stringify(r.right)}`)
  return r.left.message
}

describe("flags", () => {
  it("accepts Go and GNU styles alike", () => {
    const expected = { _tag: "showcomp", name: "code", json: false }
    expect(command(["showcomp", "-name", "code"])).toEqual(expected)
    expect(command(["showcomp", "-name=code"])).toEqual(expected)
    expect(command(["showcomp", "--name", "code"])).toEqual(expected)
    expect(command(["showcomp", "--name=code"])).toEqual(expected)
  })

  it("keeps repeated -layer flags in order, splitting at the first colon", () => {
    const cmd = command(["addconf", "-name", "p", "-layer", "b:v1", "--layer=a:v2", "-layer", "c:x:y"])
    expect(cmd).toEqual({
      _tag: "addconf",
      name: "p",
      layers: [
        { component: "b", version: "v1" },
        { component: "a", version: "v2" },
        { component: "c", version: "x:y" }
      ]
    })
  })

  it("parses booleans bare or with a value", () => {
    expect(command(["showconf", "-name", "p", "-v"])).toMatchObject({ verbose: true, json: false })
    expect(command(["showconf", "-name", "p", "-v=false", "--json"])).toMatchObject({ verbose: false, json: true })
    expect(errorOf(["showconf", "-name", "p", "-v=maybe"])).toBe(`invalid boolean value "maybe" for -v`)
  })

  it("lowercases hashes and takes optional -expect / -to", () => {
    expect(command(["addver", "-name", "c", "-version", "v", "-hash", H.toUpperCase()])).toMatchObject({ hash: H })
    expect(command(["changeconf", "-name", "p", "-component", "c", "-version", "v", "-expect", H])).toMatchObject({ expect: H })
    expect(command(["changeconf", "-name", "p", "-component", "c", "-version", "v"])).not.toHaveProperty("expect")
    expect(command(["rollback", "-name", "p", "-to", H])).toEqual({ _tag: "rollback", name: "p", to: H })
  })

  it("refuses positional arguments, unknown flags and missing values (fault 6)", () => {
    expect(errorOf(["showcomp", "-name", "code", "extra"])).toBe(`unexpected argument "extra"`)
    expect(errorOf(["components", "x"])).toBe(`unexpected argument "x"`)
    expect(errorOf(["components", "--", "x"])).toBe(`unexpected argument "x"`)
    expect(errorOf(["showcomp", "-nme", "code"])).toBe("flag provided but not defined: -nme")
    expect(errorOf(["showcomp", "-name"])).toBe("flag needs an argument: -name")
  })

  it("words errors as the original did", () => {
    expect(errorOf(["addver", "-name", "c", "-version", "v"])).toBe("name, version and hash should all be set")
    expect(errorOf(["addver", "-name", "c:x", "-version", "v", "-hash", H])).toBe("name cannot contain : symbol")
    expect(errorOf(["addver", "-name", "c", "-version", "v", "-hash", "abc"])).toBe(
      "hash should be a hex representation of content sha256 sum, 64 chars long"
    )
    expect(errorOf(["addconf", "-name", "a/b", "-layer", "c:v"])).toBe("name cannot contain / symbol")
    expect(errorOf(["addconf", "-name", "p"])).toBe("name and at least one layer should be set")
    expect(errorOf(["addconf", "-name", "p", "-layer", "nocolon"])).toBe(`layer "nocolon" should be in component:version form`)
    expect(errorOf(["frobnicate"])).toBe(`unknown command "frobnicate"`)
    expect(errorOf([])).toMatch(/no command given/)
  })

  it("-h asks for the command's usage", () => {
    const r = parse(["showconf", "-h"])
    expect(Either.isRight(r) && r.right._tag === "Help" && commandUsage(r.right.spec)).toContain("Usage of showconf")
    expect(Either.isRight(parse(["addver", "--help"]))).toBe(true)
  })

  it("help lists every command", () => {
    for (const c of catalogue) expect(commandList()).toContain(c.name)
    expect(specOf("nope")).toBeUndefined()
  })
})

// ---- properties ----

const component = Arbitrary.make(ComponentName)
const configuration = Arbitrary.make(ConfigurationName)
const version = Arbitrary.make(Version)
const sha = Arbitrary.make(Sha256)
const layers = fc.uniqueArray(fc.record({ component, version }), { minLength: 1, maxLength: 4, selector: (l) => l.component }) as fc.Arbitrary<
  ReadonlyArray<LayerRef>
>
const maybe = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined })
const withExpect = <T extends object>(t: T, expect: string | undefined) => (expect === undefined ? t : { ...t, expect })

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ name: component, version, hash: sha }).map((r) => ({ _tag: "addver", ...r }) as const),
  fc.record({ name: configuration, layers }).map((r) => ({ _tag: "addconf", ...r }) as const),
  fc.tuple(configuration, component, maybe(sha)).map(([name, c, e]) => withExpect({ _tag: "bumpconf", name, component: c } as const, e)),
  fc
    .tuple(configuration, component, version, maybe(sha))
    .map(([name, c, v, e]) => withExpect({ _tag: "changeconf", name, component: c, version: v } as const, e)),
  fc.tuple(configuration, layers, maybe(sha)).map(([name, l, e]) => withExpect({ _tag: "replaceconf", name, layers: l } as const, e)),
  fc.record({ name: configuration, verbose: fc.boolean(), json: fc.boolean() }).map((r) => ({ _tag: "showconf", ...r }) as const),
  fc.record({ name: component, json: fc.boolean() }).map((r) => ({ _tag: "showcomp", ...r }) as const),
  fc.record({ json: fc.boolean() }).map((r) => ({ _tag: "components", ...r }) as const),
  fc.record({ json: fc.boolean() }).map((r) => ({ _tag: "configurations", ...r }) as const),
  fc.record({ name: component, version }).map((r) => ({ _tag: "delver", ...r }) as const),
  fc.record({ name: component }).map((r) => ({ _tag: "delcomp", ...r }) as const),
  fc.record({ name: configuration, force: fc.boolean() }).map((r) => ({ _tag: "delconf", ...r }) as const),
  fc.record({ name: configuration, json: fc.boolean() }).map((r) => ({ _tag: "history", ...r }) as const),
  fc.record({ name: configuration, n: fc.integer({ min: 1, max: 999_999_999 }), json: fc.boolean() }).map((r) => ({ _tag: "history", ...r }) as const),
  fc.tuple(configuration, maybe(sha), maybe(sha)).map(([name, to, e]) =>
    withExpect(to === undefined ? ({ _tag: "rollback", name } as const) : ({ _tag: "rollback", name, to } as const), e)
  ),
  fc.constant({ _tag: "verify" } as const),
  fc.constant({ _tag: "help" } as const)
)

describe("properties", () => {
  it("valid commands round-trip through toArgv, join, split and parse", () => {
    fc.assert(
      fc.property(commandArb, (cmd) => {
        const line = join(toArgv(cmd))
        const back = Either.flatMap(split(line), parse)
        expect(back).toEqual(Either.right({ _tag: "Command", command: cmd }))
      }),
      { numRuns: 500 }
    )
  })

  const flagish = fc.oneof(
    fc.string(),
    fc.constantFrom("-name", "--name=x", "-layer", "-v", "-json", "-h", "--", "-", "-expect", "-to", "-force=maybe", "a:b", ":", "=")
  )

  it("random argument vectors never throw: parse returns an Either", () => {
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...catalogue.map((c) => c.name)), fc.string()), fc.array(flagish, { maxLength: 8 }), (name, args) => {
        const r = parse([name, ...args])
        expect(Either.isEither(r)).toBe(true)
        if (Either.isLeft(r)) expect(r.left.message.length).toBeGreaterThan(0)
      }),
      { numRuns: 1000 }
    )
  })

  it("random lines never throw", () => {
    fc.assert(
      fc.property(fc.fullUnicodeString(), (line) => Either.isEither(Either.flatMap(split(line), parse))),
      { numRuns: 500 }
    )
  })
})
