import { Duration, Either } from "effect"
import { describe, expect, it } from "vitest"
import { flag, type FlagSpec, parseFlags, parseGoDuration, scanFlags } from "../../src/domain/Flags.js"

const spec: ReadonlyArray<FlagSpec> = [flag("name", "n"), flag("layer", "l", "list"), flag("v", "v", "bool")]
const lookup = (name: string) => spec.find((s) => s.name === name)
const message = (args: Array<string>) => Either.match(parseFlags(spec, args), { onLeft: (e) => e.message, onRight: () => "ok" })

describe("Go-style flags", () => {
  it("reads -f x, -f=x, --f x and --f=x alike; lists keep their order; the last string wins", () => {
    for (const args of [["-name", "a"], ["-name=a"], ["--name", "a"], ["--name=a"]]) {
      expect(Either.getOrThrow(parseFlags(spec, args)).strings.get("name")).toBe("a")
    }
    const raw = Either.getOrThrow(parseFlags(spec, ["-layer", "b", "--layer=a", "-name", "x", "-name=y"]))
    expect(raw.lists.get("layer")).toEqual(["b", "a"])
    expect(raw.strings.get("name")).toBe("y")
  })

  it("bool flags take no value, or one of Go's ParseBool spellings inline", () => {
    expect(Either.getOrThrow(parseFlags(spec, ["-v"])).bools.has("v")).toBe(true)
    for (const t of ["1", "t", "T", "true", "TRUE", "True"]) expect(Either.getOrThrow(parseFlags(spec, [`-v=${t}`])).bools.has("v")).toBe(true)
    for (const f of ["0", "f", "F", "false", "FALSE", "False"]) expect(Either.getOrThrow(parseFlags(spec, ["-v", `-v=${f}`])).bools.has("v")).toBe(false)
    expect(message(["-v=maybe"])).toBe('invalid boolean value "maybe" for -v')
    // a bool never takes the next word: it is an argument
    expect(message(["-v", "true"])).toBe('unexpected argument "true"')
  })

  it("words problems as Go's flag package", () => {
    expect(message(["-bogus"])).toBe("flag provided but not defined: -bogus")
    expect(message(["-name"])).toBe("flag needs an argument: -name")
    expect(message(["-name", "a", "extra"])).toBe('unexpected argument "extra"')
    expect(message(["--", "x"])).toBe('unexpected argument "x"')
    expect(message(["-name", "a", "--"])).toBe("ok")
  })

  it("-h: the catalogue reads on, deploy-registry (helpStops) stops as Go does", () => {
    expect(message(["-h", "-bogus"])).toBe("flag provided but not defined: -bogus")
    const stopped = scanFlags(["-h", "-bogus"], { lookup, helpStops: true })
    expect(Either.getOrThrow(stopped).help).toBe(true)
  })

  it("stops at the first non-flag, or takes the words a caller wants", () => {
    const stop = Either.getOrThrow(scanFlags(["-name", "a", "cmd", "-v"], { lookup }))
    expect(stop.rest).toEqual(["cmd", "-v"])
    const words: Array<string> = []
    const take = Either.getOrThrow(scanFlags(["cmd", "-v", "x"], { lookup, word: (w) => (words.push(w), true) }))
    expect([words, take.given.map((g) => g.spec.name), take.rest]).toEqual([["cmd", "x"], ["v"], []])
  })

  it("parses Go durations (one parser for every program)", () => {
    const ms = (s: string) => millis(parseGoDuration(s))
    expect(ms("30s")).toBe(30_000)
    expect(ms("1h2m3.5s")).toBe(3_723_500)
    expect(ms("2m30s")).toBe(150_000)
    expect(ms("250ms")).toBe(250)
    expect(ms("1.5h")).toBe(5_400_000)
    expect(ms("0")).toBe(0)
    for (const bad of ["10", "5 s", "", "1d", "m", "-1s"]) expect(parseGoDuration(bad)).toBeUndefined()
  })
})

const millis = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))
