import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { configHash } from "../../src/domain/ConfigHash.js"

// The reference is computed independently by coreutils: printf '%s\n' h1 h2 | sha256sum
const shellHash = (lines: ReadonlyArray<string>) =>
  execFileSync("sh", ["-c", `printf '%s\\n' "$@" | sha256sum`, "sh", ...lines], { encoding: "utf8" }).split(" ")[0]

const h1 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" // sha256("hello\n")
const h2 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256("")

describe("configHash", () => {
  it("matches sha256sum over '<hash>\\n' per layer", () => {
    expect(configHash([h1, h2])).toBe(shellHash([h1, h2]))
    // The same value, computed once with that command and hard-coded.
    expect(configHash([h1, h2])).toBe("d920dc11b7174ebf97113251e2315bbc773286dc7b48cd7b8e1a3c3a14b00ff1")
  })

  it("depends on layer order", () => {
    expect(configHash([h1, h2])).not.toBe(configHash([h2, h1]))
  })

  it("of one layer is sha256 of that hash and a newline", () => {
    expect(configHash([h1])).toBe(shellHash([h1]))
  })
})
