// addsig and the signatures kept with states (in-process core): what is refused, and that signatures
// stay with their state through retention and rollback while the served list follows the current state.
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { SignedState, signatureBody } from "../../src/domain/SignedState.js"
import { Signatures } from "../../src/registry/Signatures.js"
import { Storage } from "../../src/registry/Storage.js"
import { sign } from "../../src/ssh/Signer.js"
import { run, stageUpload, TestCore } from "../support/layers.js"

const keys = mkdtempSync(path.join(os.tmpdir(), "sigs-"))
afterAll(() => rmSync(keys, { recursive: true, force: true }))
execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(keys, "op")])
const T = Date.parse("2026-12-01T10:00:00Z")
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z")

const addsig = (name: string, hash: string, at: number, namespace?: string) =>
  Effect.gen(function* () {
    const sig = yield* sign({ _tag: "File", path: path.join(keys, "op") }, Buffer.from(new SignedState({ name, hash, time: new Date(iso(at)) }).message), namespace)
    return yield* run(`addsig -name ${name} -hash ${hash} -time ${iso(at)} -signature ${signatureBody(sig)}`)
  })
const current = (name: string) => Effect.flatMap(Storage, (s) => s.current(name))
const historyJson = (name: string) =>
  Effect.map(run(`history -name ${name} -json`), (r) => JSON.parse(r.output) as Array<{ Hash: string; Current: boolean; Signatures?: Array<unknown> }>)

describe("addsig", () => {
  it.effect("attaches a valid signature of the current state; refuses stale, future, other-hash and bad ones", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T)
      for (const v of ["v1", "v2"]) yield* run(`addver -name code -version ${v} -hash ${yield* stageUpload(`code ${v}`)}`)
      yield* run("addconf -name p1 -layer code:v1")
      const h1 = (yield* current("p1")).hash
      expect(yield* addsig("p1", h1, T - 3600_000)).toMatchObject({ exitCode: 1, output: expect.stringMatching(/before the state was made/) })
      expect(yield* addsig("p1", h1, T + 3600_000)).toMatchObject({ exitCode: 1, output: expect.stringMatching(/in the future/) })
      expect(yield* addsig("p1", "1".repeat(64), T)).toMatchObject({ exitCode: 1, output: expect.stringMatching(/not the signed/) })
      expect(yield* addsig("p1", h1, T, "git")).toMatchObject({ exitCode: 1, output: expect.stringMatching(/namespace/) })
      expect(yield* addsig("nosuch", h1, T)).toMatchObject({ exitCode: 1, output: expect.stringMatching(/not found/) })
      expect(yield* run(`addsig -name p1 -hash ${h1} -time ${iso(T)} -signature AAAA`)).toMatchObject({ exitCode: 1 })
      expect(yield* addsig("p1", h1, T + 1000)).toMatchObject({ exitCode: 0, output: expect.stringMatching(/^signature by SHA256:\S+ attached/) })
      expect((yield* Effect.flatMap(Signatures, (s) => s.current("p1")))?.Signatures).toHaveLength(1)

      // A change: the new state is unsigned; the old one keeps its signature.
      yield* TestClock.setTime(T + 60_000)
      yield* run("changeconf -name p1 -component code -version v2")
      expect((yield* Effect.flatMap(Signatures, (s) => s.current("p1")))?.Signatures).toEqual([])
      // Rollback to v1 makes a new state with h1: unsigned until signed anew; the old signature stays with the old state.
      expect(yield* run("rollback -name p1")).toMatchObject({ exitCode: 0 })
      // Retention (v2 goes: neither the newest version nor the current state's) keeps every state's signatures.
      yield* run(`addver -name code -version v3 -hash ${yield* stageUpload("code v3")}`)
      expect((yield* Effect.flatMap(Storage, (s) => s.pruneVersions(1))).map((v) => v.version)).toEqual(["v2"])
      const after = yield* historyJson("p1")
      expect(after.map((s) => [s.Hash === h1, s.Current, s.Signatures?.length ?? 0])).toEqual([[true, true, 0], [false, false, 0], [true, false, 1]])
      expect((yield* Effect.flatMap(Signatures, (s) => s.current("p1")))?.Signatures).toEqual([])
    }).pipe(Effect.provide(TestCore())))
})
