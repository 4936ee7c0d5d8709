import { describe, expect, it } from "vitest"
import { parseArgs } from "../../../src/registry/Flags.js"

describe("deploy-registry import flags", () => {
  it("takes -from and -dir in every Go flag spelling; -dir defaults as for the server", () => {
    for (const args of [["-from", "/go", "-dir", "/new"], ["--from=/go", "--dir", "/new"], ["-dir=/new", "-from=/go"]]) {
      expect(parseArgs(["import", ...args])).toEqual({ _tag: "Import", from: "/go", dir: "/new" })
    }
    expect(parseArgs(["import", "-from", "/go"])).toEqual({ _tag: "Import", from: "/go", dir: "/var/lib/deploy-registry" })
  })

  it("reports usage errors in one line", () => {
    const message = (args: Array<string>) => {
      const r = parseArgs(["import", ...args])
      return r._tag === "Usage" ? r.message : `not a usage error: ${r._tag}`
    }
    expect(message([])).toBe("import needs -from GO_DIR")
    expect(message(["-from", ""])).toBe('invalid value "" for flag -from: must not be empty')
    expect(message(["-from", "/go", "extra"])).toBe('unexpected argument "extra"')
    expect(message(["-from", "/go", "-addr", ":1"])).toBe("flag provided but not defined: -addr")
    expect(message(["-from"])).toBe("flag needs an argument: -from")
  })

  it("-h prints the usage, which lists import", () => {
    const r = parseArgs(["import", "-h"])
    expect(r._tag === "Help" && r.text).toContain("deploy-registry import -from GO_DIR -dir DIR")
  })
})
