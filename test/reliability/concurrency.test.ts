// 20 operators, each on their own SSH connection with their own key, change configurations at once:
// conflicting changes guarded by -expect <current hash> let exactly one through per round; changes that
// do not conflict all succeed; `history` shows every successful change, by whom, and nothing else.
import { mkdir, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { type KeyPair, makeKey, tempDir } from "../support/keys.js"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { openSession, type Session } from "./lib/client.js"
import { layerOf } from "../support/tar.js"
import { showconf } from "./lib/state.js"

const OPERATORS = 20
const ROUNDS = 5

let reg: TestRegistry
let keys: Array<KeyPair>
let sessions: Array<Session>
const versionHash = new Map<string, string>()

beforeAll(async () => {
  const dir = await tempDir("rel-concurrency-")
  const keyDir = path.join(dir, "test-keys")
  await mkdir(keyDir, { recursive: true })
  const operator = await makeKey(keyDir, "operator", "operator@test")
  keys = await Promise.all(Array.from({ length: OPERATORS }, (_, i) => makeKey(keyDir, `op${i}`, `op${i}@test`)))
  await writeFile(path.join(dir, "operator.keys"), [operator, ...keys].map((k) => k.publicLine).join("\n") + "\n")
  reg = await startRegistry({ dir })
  const admin = await openSession(reg, reg.operator.privatePath)
  for (let v = 0; v <= OPERATORS; v++) {
    const h = await admin.upload(layerOf(`content of c v${v}\n`))
    versionHash.set(`v${v}`, h)
    expect((await admin.exec(`addver -name c -version v${v} -hash ${h}`)).code).toBe(0)
  }
  const d = await admin.upload(layerOf("d\n"))
  expect((await admin.exec(`addver -name d -version v0 -hash ${d}`)).code).toBe(0)
  versionHash.set("d", d)
  expect((await admin.exec("addconf -name shared -layer c:v0 -layer d:v0")).code).toBe(0)
  for (let i = 0; i < OPERATORS; i++) expect((await admin.exec(`addconf -name own${i} -layer c:v0`)).code).toBe(0)
  await admin.close()
  sessions = await Promise.all(keys.map((k) => openSession(reg, k.privatePath, "operator")))
}, 120_000)

afterAll(async () => {
  await Promise.all((sessions ?? []).map((s) => s.close().catch(() => undefined)))
  await reg?.stop("SIGKILL")
  if (reg) await rm(reg.dir, { recursive: true, force: true })
})

interface HistoryEntry {
  Hash: string
  Who: { Fingerprint: string; Comment: string }
  Layers: Array<{ Name: string; Version: string }>
}

it("exactly one of 20 conflicting -expect changes wins each round; non-conflicting ones all succeed; history has each", async () => {
  const observer = sessions[0]!
  const winners: Array<{ op: number; hash: string }> = []
  let sharedVersion = "v0"
  const ownVersion = Array.from({ length: OPERATORS }, () => "v0")

  for (let round = 0; round < ROUNDS; round++) {
    const current = (await showconf(observer, "shared")).Hash
    // One after another: 20 at once would exceed the 10 sessions a connection may have open (-max-sessions, as sshd).
    const ownHashes: Array<string> = []
    for (let i = 0; i < OPERATORS; i++) ownHashes.push((await showconf(observer, `own${i}`)).Hash)
    // Every operator asks for a version different from the current one: every success is a real change.
    const candidates = Array.from({ length: OPERATORS + 1 }, (_, v) => `v${v}`).filter((v) => v !== sharedVersion)
    const results = await Promise.all(
      sessions.map(async (s, i) => {
        const want = candidates[i]!
        const ownWant = ownVersion[i] === `v${round + 1}` ? `v${round + 2}` : `v${round + 1}`
        const [shared, own] = await Promise.all([
          s.exec(`changeconf -name shared -component c -version ${want} -expect ${current}`),
          s.exec(`changeconf -name own${i} -component c -version ${ownWant} -expect ${ownHashes[i]}`)
        ])
        return { i, want, ownWant, shared, own }
      })
    )
    const won = results.filter((r) => r.shared.code === 0)
    expect(won.map((r) => r.i), `round ${round}`).toHaveLength(1)
    for (const r of results) {
      expect([0, 1]).toContain(r.shared.code)
      if (r.shared.code === 1) expect(r.shared.stdout.toString()).toMatch(/expect|hash|changed|conflict/i)
      expect(r.own.code, `own${r.i}: ${r.own.stdout.toString()}`).toBe(0)
      ownVersion[r.i] = r.ownWant
    }
    const w = won[0]!
    sharedVersion = w.want
    const hash = configHash([versionHash.get(w.want)!, versionHash.get("d")!])
    expect((await showconf(observer, "shared")).Hash).toBe(hash)
    winners.push({ op: w.i, hash })
  }

  const history = JSON.parse((await observer.exec("history -json -name shared")).stdout.toString()) as Array<HistoryEntry>
  // Newest first: every winner, then the initial state; nothing from the losers.
  expect(history.map((h) => h.Hash)).toEqual([...winners.map((w) => w.hash).reverse(), configHash([versionHash.get("v0")!, versionHash.get("d")!])])
  for (const [k, w] of [...winners].reverse().entries()) {
    expect(history[k]!.Who.Fingerprint).toBe(keys[w.op]!.fingerprint)
    expect(history[k]!.Who.Comment).toBe(`op${w.op}@test`)
  }
  // None of the non-conflicting changes got lost.
  for (let i = 0; i < OPERATORS; i++) {
    const own = JSON.parse((await observer.exec(`history -json -name own${i}`)).stdout.toString()) as Array<HistoryEntry>
    expect(own).toHaveLength(ROUNDS + 1)
    expect(own.slice(0, ROUNDS).every((h) => h.Who.Fingerprint === keys[i]!.fingerprint)).toBe(true)
    expect(own[0]!.Layers[0]!.Version).toBe(ownVersion[i])
  }
  expect((await observer.exec("verify")).code).toBe(0)
})
