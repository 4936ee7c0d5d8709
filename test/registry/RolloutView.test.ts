// What a rollout writes for `history` and -status: bounded rows and texts however large the fleet.
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { HostView, MAX_NAMED_HOSTS, RolloutSpec, RolloutState, Tick, Wave } from "../../src/domain/Rollout.js"
import { parseWaves, plan, step } from "../../src/registry/RolloutPlan.js"
import { DRIVER, eventLine, eventRows, startedText } from "../../src/registry/RolloutView.js"

const OLD = "o".repeat(64)
const NEW = "n".repeat(64)
const N = 5000
const hosts = Array.from({ length: N }, (_, i) => `host-${String(i).padStart(4, "0")}.example.com`)
const spec = new RolloutSpec({
  configuration: "web", from: OLD, to: NEW, waves: Either.getOrThrow(parseWaves("1,10%,50%,100%")), soakMs: 0,
  maxFailures: N, onFailure: "revert", canary: hosts.slice(0, 100)
})
const bad = (host: string) => new HostView({ host, online: true, running: OLD, attempted: NEW, outcome: "rolled-back" })
const updating = (host: string) => new HostView({ host, online: true, running: OLD })
const good = (host: string) => new HostView({ host, online: true, running: NEW, attempted: NEW, outcome: "deployed", healthySince: 0 })

describe("rollout events", () => {
  it("a rollout of 5,000 hosts writes a few dozen short rows, not one per host", () => {
    const rows: Array<{ text: string; actor: string }> = [{ text: startedText(spec, "0s"), actor: "SHA256:x op" }]
    let s = plan(spec, hosts, 0)
    rows.push(...eventRows([{ _tag: "WaveAdmitted", wave: 1, hosts: s.waves[0]!.hosts, at: 0 }], DRIVER, 0))
    // Every wave admitted as the previous one is healthy.
    for (let t = 1; s.phase === "running" && t < 10; t++) {
      const r = step(s, new Tick({ now: t, hosts: hosts.map(good) }))
      rows.push(...eventRows(r.changes, DRIVER, s.failed.length))
      s = r.state
    }
    expect(s.phase).toBe("completed")
    // The same fleet failing, 1,000 more hosts at every look, all of them admitted.
    s = new RolloutState({ ...plan(spec, hosts, 0), waves: plan(spec, hosts, 0).waves.map((w) => new Wave({ ...w, admittedAt: 0 })) })
    for (let t = 1; t <= N / 1000; t++) {
      const r = step(s, new Tick({ now: t, hosts: hosts.map((h, i) => (i < t * 1000 ? bad(h) : updating(h))) }))
      expect(r.changes.filter((c) => c._tag === "HostFailed")).toHaveLength(1000)
      rows.push(...eventRows(r.changes, DRIVER, s.failed.length))
      s = r.state
    }
    expect(s.failed).toHaveLength(N)
    expect(rows.length).toBeLessThanOrEqual(2 + spec.waves.length + 1 + MAX_NAMED_HOSTS)
    for (const r of rows) expect(eventLine({ ...r, time: "" }).length).toBeLessThan(800)
    expect(rows.find((r) => r.text.startsWith("wave 4 admitted"))?.text).toMatch(/ and 2490 more$/)
    expect(rows.find((r) => r.text.startsWith("1000 hosts failed"))?.text).toMatch(/host-0000\.example\.com \(rolled-back\), .* and 990 more$/)
  })

  it("one failure names its host; each row says who made it", () => {
    expect(eventRows([{ _tag: "HostFailed", host: "a1", outcome: "failed", at: 0 }], DRIVER, 0)).toEqual([{ text: "host a1 failed: failed", actor: DRIVER }])
    expect(eventRows([{ _tag: "PhaseChanged", phase: "aborted", reason: "aborted by op", at: 0 }], "op", 0)).toEqual([{ text: "aborted", actor: "op" }])
    expect(eventLine({ time: "", text: "paused", actor: "SHA256:x op@test" })).toBe("paused (by SHA256:x op@test)")
    expect(eventLine({ time: "", text: "started by someone: …", actor: "" })).toBe("started by someone: …") // a row older than migration 5
  })
})
