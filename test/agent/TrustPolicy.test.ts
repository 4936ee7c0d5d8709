// deploy-agent -trust: the cycle against a fake registry serving documents and signatures made with
// real keys (ssh-keygen), and loadTrust's checks of the allowed_signers file.
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { cycle } from "../../src/agent/Agent.js"
import { loadTrust, type TrustSettings } from "../../src/agent/TrustPolicy.js"
import { SignedState } from "../../src/domain/SignedState.js"
import { sign } from "../../src/ssh/Signer.js"
import { blob, makeFakeRegistry, makeFakeScript, publish, settings, tempDir, testLayer } from "./support.js"

const keys = mkdtempSync(path.join(os.tmpdir(), "trust-keys-"))
afterAll(() => rmSync(keys, { recursive: true, force: true }))
const key = (name: string) => {
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(keys, name)])
  return readFileSync(path.join(keys, `${name}.pub`), "utf8").trim()
}
const pubs = { alice: key("alice"), bob: key("bob"), mallory: key("mallory") }
const trustFile = (lines: ReadonlyArray<string>, min?: string): TrustSettings => {
  const file = path.join(keys, `allowed-${Math.random().toString(36).slice(2)}`)
  writeFileSync(file, lines.join("\n") + "\n")
  const t = loadTrust(file, min)
  if (typeof t === "string") throw new Error(t)
  return t
}
const signedBy = (who: keyof typeof pubs, name: string, hash: string, time: Date, namespace?: string) =>
  Effect.map(sign({ _tag: "File", path: path.join(keys, who) }, Buffer.from(new SignedState({ name, hash, time }).message), namespace), (Signature) => ({
    Time: time.toISOString().replace(/\.\d+Z$/, "Z"),
    Signature
  }))

const code1 = blob("code", "v01", [{ path: "app/main.js", content: "v1" }])
const code2 = blob("code", "v02", [{ path: "app/main.js", content: "v2" }])
const t0 = new Date("2026-11-01T10:00:00Z")
const t1 = new Date("2026-11-02T10:00:00Z")

/** The worlds' directories, removed after the file. */
const worlds: Array<string> = []
afterAll(() => worlds.forEach((d) => rmSync(d, { recursive: true, force: true })))

const world = (trust: TrustSettings) =>
  Effect.gen(function* () {
    const dir = yield* Effect.promise(() => tempDir("agent-trust-"))
    worlds.push(dir)
    const cfg = settings(dir, { trust })
    const reg = yield* makeFakeRegistry
    const script = yield* makeFakeScript
    const lines: Array<string> = []
    const run = <A, E>(eff: Effect.Effect<A, E, any>) => Effect.provide(eff, testLayer(cfg, reg, script, lines)) as Effect.Effect<A, E>
    const deployedHash = () => (existsSync(cfg.state) ? (JSON.parse(readFileSync(cfg.state, "utf8")) as { Hash: string }).Hash : undefined)
    return { dir, cfg, reg, script, lines, run, deployedHash }
  })

describe("-trust", () => {
  it.effect("refuses unsigned, untrusted, tampered and wrong-namespace states, downloading and running nothing", () =>
    Effect.gen(function* () {
      const w = yield* world(trustFile([`alice ${pubs.alice}`]))
      const hash = publish(w.reg, "project1", [code1])
      const refused = (reason: string) => ({ _tag: "Refused", hash, current: undefined, reason })
      expect(yield* w.run(cycle)).toMatchObject(refused("unsigned"))
      w.reg.signatures.set("project1", { hash, list: [yield* signedBy("mallory", "project1", hash, t0)] })
      expect(yield* w.run(cycle)).toMatchObject(refused("untrusted signer"))
      // Alice signed another hash; the registry serves it for this one.
      const other = yield* signedBy("alice", "project1", "1".repeat(64), t0)
      w.reg.signatures.set("project1", { hash, list: [other] })
      expect(yield* w.run(cycle)).toMatchObject(refused("bad signature"))
      w.reg.signatures.set("project1", { hash, list: [yield* signedBy("alice", "project1", hash, t0, "file")] })
      expect(yield* w.run(cycle)).toMatchObject(refused("bad signature"))
      w.reg.signatures.set("project1", { hash, list: [yield* signedBy("alice", "project2", hash, t0)] })
      expect(yield* w.run(cycle)).toMatchObject(refused("bad signature"))
      expect(w.reg.downloads).toEqual([])
      expect(w.script.runs).toEqual([])
      expect(w.deployedHash()).toBeUndefined()
      expect(w.lines.some((l) => l.includes("refused configuration project1"))).toBe(true)
    }))

  it.effect("deploys a trusted state, then refuses an older signed state replayed, staying on what it runs", () =>
    Effect.gen(function* () {
      const w = yield* world(trustFile([`alice ${pubs.alice}`]))
      const old = publish(w.reg, "project1", [code1])
      const oldSig = yield* signedBy("alice", "project1", old, t0)
      w.reg.signatures.set("project1", { hash: old, list: [oldSig] })
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Deployed", hash: old })
      const now = publish(w.reg, "project1", [code2])
      w.reg.signatures.set("project1", { hash: now, list: [yield* signedBy("alice", "project1", now, t1)] })
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Deployed", hash: now, previous: old })
      // The registry (or whoever holds it) serves the old state with its genuine old signature.
      publish(w.reg, "project1", [code1])
      w.reg.signatures.set("project1", { hash: old, list: [oldSig] })
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Refused", hash: old, current: now, reason: "older than current" })
      expect(w.deployedHash()).toBe(now)
      // A rollback signed anew goes through.
      w.reg.signatures.set("project1", { hash: old, list: [yield* signedBy("alice", "project1", old, new Date(t1.getTime() + 60_000))] })
      expect(yield* w.run(cycle)).toMatchObject({ _tag: "Deployed", hash: old, previous: now })
    }))

  it.effect("a revoked signer (valid-before passed) no longer counts; -trust-min needs distinct trusted keys", () =>
    Effect.gen(function* () {
      const revoked = yield* world(trustFile([`alice valid-before="20200101" ${pubs.alice}`, `bob ${pubs.bob}`]))
      const h = publish(revoked.reg, "project1", [code1])
      revoked.reg.signatures.set("project1", { hash: h, list: [yield* signedBy("alice", "project1", h, t0)] })
      expect(yield* revoked.run(cycle)).toMatchObject({ _tag: "Refused", reason: "untrusted signer" })

      const two = yield* world(trustFile([`alice ${pubs.alice}`, `bob ${pubs.bob}`], "2"))
      const h2 = publish(two.reg, "project1", [code1])
      const a = yield* signedBy("alice", "project1", h2, t0)
      two.reg.signatures.set("project1", { hash: h2, list: [a, a] })
      expect(yield* two.run(cycle)).toMatchObject({ _tag: "Refused", reason: "unsigned" })
      two.reg.signatures.set("project1", { hash: h2, list: [a, yield* signedBy("mallory", "project1", h2, t0)] })
      expect(yield* two.run(cycle)).toMatchObject({ _tag: "Refused", reason: "untrusted signer" })
      two.reg.signatures.set("project1", { hash: h2, list: [a, yield* signedBy("bob", "project1", h2, t0)] })
      expect(yield* two.run(cycle)).toMatchObject({ _tag: "Deployed", hash: h2 })
    }))

  it("loadTrust refuses files it cannot honour", () => {
    const file = path.join(keys, "bad")
    writeFileSync(file, `alice cert-authority ${pubs.alice}\n`)
    expect(loadTrust(file, undefined)).toMatch(/bad:1: .*cert-authority/)
    writeFileSync(file, `# nobody\n`)
    expect(loadTrust(file, undefined)).toMatch(/no signers/)
    writeFileSync(file, `alice ${pubs.alice}\n`)
    expect(loadTrust(file, "2")).toMatch(/only 1 distinct key/)
    expect(loadTrust(file, "0")).toMatch(/not a positive number/)
    expect(loadTrust(path.join(keys, "missing"), undefined)).toMatch(/cannot read/)
  })
})
