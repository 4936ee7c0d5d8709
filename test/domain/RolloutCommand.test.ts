// `rollout` parsing: validation on both sides (registry, deployctl) and the argument vector deployctl sends.
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { parse, toArgv } from "../../src/domain/Commands.js"

const parsed = (line: string) => parse(line.split(" "))
const command = (line: string) => {
  const p = parsed(line)
  if (Either.isLeft(p) || p.right._tag !== "Command") throw new Error(`${line}: ${Either.isLeft(p) ? p.left.message : "help"}`)
  return p.right.command
}
const error = (line: string) => {
  const p = parsed(line)
  return Either.isLeft(p) ? p.left.message : "parsed"
}

describe("rollout command", () => {
  it("starts with defaults and round-trips through toArgv", () => {
    const c = command("rollout -name web -component code -version v2 -canary a1,a2 -soak 2s -waves 1,50%")
    expect(c).toMatchObject({ _tag: "rollout", action: "start", soakMs: 2000, maxFailures: 0, onFailure: "revert", canary: ["a1", "a2"], waves: "1,50%" })
    expect(command(toArgv(c).join(" "))).toEqual(c)
    const d = command("rollout -name web -layer a:1 -layer b:2")
    expect(d).toMatchObject({ waves: "1,10%,50%,100%", soakMs: 60_000, target: { _tag: "Layers" } })
    expect(command(toArgv(d).join(" "))).toEqual(d)
    const s = command("rollout -name web -status -json")
    expect(s).toMatchObject({ action: "status", json: true })
    expect(command(toArgv(s).join(" "))).toEqual(s)
  })

  it("refuses a missing or doubled target, bad waves, soak, policy and two actions", () => {
    expect(error("rollout -name web")).toContain("give the target with one of")
    expect(error(`rollout -name web -component c -version v -to ${"a".repeat(64)}`)).toContain("give the target with one of")
    expect(error("rollout -name web -component c")).toContain("-component and -version should both be set")
    expect(error("rollout -name web -component c -version v -waves 0")).toContain("-waves")
    expect(error("rollout -name web -component c -version v -soak forever")).toContain("-soak")
    expect(error("rollout -name web -component c -version v -on-failure shrug")).toContain("-on-failure")
    expect(error("rollout -name web -component c -version v -max-failures -1")).not.toBe("parsed")
    expect(error("rollout -name web -pause -abort")).toContain("only one of")
  })
})
