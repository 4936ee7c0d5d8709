// The rollout model as a state machine: wave sizes and order, admission after the soak, failures,
// halt/revert, pause/resume/abort, what each host is served, the status, and a stored state resuming.
import { Either, FastCheck as fc, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Abort, HostView, Pause, Resume, RolloutSpec, RolloutState, Tick } from "../../src/domain/Rollout.js"
import { cumulativeCounts, parseWaves, plan, served, status, step, waveOrder } from "../../src/registry/RolloutPlan.js"

const OLD = "o".repeat(64)
const NEW = "n".repeat(64)
const S = 1000

const spec = (over: Partial<ConstructorParameters<typeof RolloutSpec>[0]> = {}) =>
  new RolloutSpec({
    configuration: "web",
    from: OLD,
    to: NEW,
    waves: Either.getOrThrow(parseWaves("1,50%,100%")),
    soakMs: 60 * S,
    maxFailures: 0,
    onFailure: "revert",
    canary: ["a1"],
    ...over
  })

const hosts = ["a1", "a2", "a3", "a4"]
/** A host running the target, healthy since `since`. */
const good = (host: string, since: number) => new HostView({ host, online: true, running: NEW, attempted: NEW, outcome: "deployed", healthySince: since })
const old = (host: string) => new HostView({ host, online: true, running: OLD, attempted: OLD, outcome: "deployed", healthySince: 0 })
const bad = (host: string) => new HostView({ host, online: true, running: OLD, attempted: NEW, outcome: "rolled-back" })
const offline = (host: string) => new HostView({ host, online: false })

const servedAll = (s: RolloutState) => Object.fromEntries([...hosts, "late"].map((h) => [h, served(s, h) === NEW ? "new" : "old"]))

describe("wave sizes and order", () => {
  it("parses -waves, refusing what is not a count or a percentage", () => {
    expect(Either.getOrThrow(parseWaves("1,10%,50%,100%"))).toEqual([
      { _tag: "Hosts", count: 1 },
      { _tag: "Percent", percent: 10 },
      { _tag: "Percent", percent: 50 },
      { _tag: "Percent", percent: 100 }
    ])
    for (const w of ["", "0", "1,,2", "150%", "0%", "-1", "1.5", "ten", Array(101).fill("1").join(",")]) expect(Either.isLeft(parseWaves(w)), w).toBe(true)
  })

  it("turns them into cumulative counts: rounded up, capped, never shrinking, the rest in a last wave", () => {
    const w = (s: string) => Either.getOrThrow(parseWaves(s))
    expect(cumulativeCounts(w("1,10%,50%,100%"), 20)).toEqual([1, 2, 10, 20])
    expect(cumulativeCounts(w("1,10%,50%,100%"), 3)).toEqual([1, 2, 3]) // 10% of 3 adds nobody: dropped
    expect(cumulativeCounts(w("1,50%"), 10)).toEqual([1, 5, 10])
    expect(cumulativeCounts(w("5,2,100%"), 10)).toEqual([5, 10])
    expect(cumulativeCounts(w("1,100%"), 0)).toEqual([0])
    expect(cumulativeCounts(w("1,100%"), 10, 3)).toEqual([3, 10]) // the canaries make the first wave
  })

  it("orders hosts the same way whatever order they are listed in: canaries first, then by sha256(configuration, host)", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 30 }), fc.integer(), (names, seed) => {
        const shuffled = [...names].sort((a, b) => ((a.charCodeAt(0) * seed) % 7) - ((b.charCodeAt(0) * seed) % 7))
        expect(waveOrder("web", shuffled, [])).toEqual(waveOrder("web", names, []))
        const canary = names.slice(0, 2).reverse()
        const order = waveOrder("web", [...names, ...names], canary)
        expect(order.slice(0, canary.length)).toEqual(canary)
        expect(order.length).toBe(names.length)
      }),
      { seed: 18, numRuns: 200 }
    )
  })
})

describe("a rollout over a1…a4 (canary a1, waves 1,50%,100%, soak 60s)", () => {
  it("admits each wave after its hosts are healthy for the soak, then completes; polling hosts get it in the last wave", () => {
    let s = plan(spec(), hosts, 0)
    expect(s.waves.map((w) => w.hosts.length)).toEqual([1, 1, 2])
    expect(s.waves[0]!.hosts).toEqual(["a1"])
    expect(servedAll(s)).toEqual({ a1: "new", a2: "old", a3: "old", a4: "old", late: "old" })
    expect(served(s, undefined)).toBe(OLD)

    // a1 healthy since 5 s: soaking until 65 s.
    let r = step(s, new Tick({ now: 10 * S, hosts: [good("a1", 5 * S), old("a2"), old("a3"), old("a4")] }))
    expect(r.changes).toEqual([])
    expect(status(r.state, [good("a1", 5 * S)], 10 * S).waitingFor).toEqual([{ host: "a1", state: "soaking", soakLeftMs: 55 * S }])
    r = step(r.state, new Tick({ now: 65 * S, hosts: [good("a1", 5 * S), old("a2"), old("a3"), old("a4")] }))
    const w2 = s.waves[1]!.hosts[0]!
    expect(r.changes).toEqual([{ _tag: "WaveAdmitted", wave: 2, hosts: [w2], at: 65 * S }])
    s = r.state
    expect(served(s, w2)).toBe(NEW)
    expect(served(s, undefined)).toBe(OLD)

    const all = (t: number) => hosts.map((h) => good(h, t))
    r = step(s, new Tick({ now: 200 * S, hosts: all(100 * S) }))
    expect(r.changes.map((c) => c._tag)).toEqual(["WaveAdmitted"])
    expect(served(r.state, undefined)).toBe(NEW) // the last wave is admitted: polling and late hosts too
    expect(served(r.state, "late")).toBe(NEW)
    r = step(r.state, new Tick({ now: 300 * S, hosts: all(210 * S) }))
    expect(r.changes).toEqual([{ _tag: "PhaseChanged", phase: "completed", at: 300 * S }])
    expect(servedAll(r.state)).toEqual({ a1: "new", a2: "new", a3: "new", a4: "new", late: "new" })
  })

  it("a canary that rolls back halts the rollout; with revert everyone gets the old state, and a2–a4 never get the new one", () => {
    const s = plan(spec(), hosts, 0)
    const r = step(s, new Tick({ now: 30 * S, hosts: [bad("a1"), old("a2"), old("a3"), old("a4")] }))
    expect(r.state.phase).toBe("reverted")
    expect(r.changes).toEqual([
      { _tag: "HostFailed", host: "a1", outcome: "rolled-back", at: 30 * S },
      { _tag: "PhaseChanged", phase: "reverted", reason: "1 host(s) failed (max 0): a1", at: 30 * S }
    ])
    expect(servedAll(r.state)).toEqual({ a1: "old", a2: "old", a3: "old", a4: "old", late: "old" })
    expect(status(r.state, [bad("a1"), old("a2")], 30 * S).failed).toEqual(["a1"])
    // Finished: later ticks change nothing.
    expect(step(r.state, new Tick({ now: 999 * S, hosts: hosts.map((h) => good(h, 0)) })).changes).toEqual([])
  })

  it("with -on-failure halt the admitted hosts keep the target and nobody else gets it; -abort then returns everyone", () => {
    const s = plan(spec({ onFailure: "halt" }), hosts, 0)
    const r = step(s, new Tick({ now: 30 * S, hosts: [bad("a1")] }))
    expect(r.state.phase).toBe("halted")
    expect(servedAll(r.state)).toEqual({ a1: "new", a2: "old", a3: "old", a4: "old", late: "old" })
    const a = step(r.state, new Abort({ now: 40 * S, by: "alice" }))
    expect(a.state.phase).toBe("aborted")
    expect(a.state.reason).toBe("aborted by alice")
    expect(servedAll(a.state)).toEqual({ a1: "old", a2: "old", a3: "old", a4: "old", late: "old" })
  })

  it("-max-failures 1 tolerates one failed host (it does not block the next wave); the second halts", () => {
    let s = plan(spec({ maxFailures: 1, canary: ["a1", "a2"], waves: Either.getOrThrow(parseWaves("2,100%")) }), hosts, 0)
    let r = step(s, new Tick({ now: 70 * S, hosts: [bad("a1"), good("a2", 0)] }))
    expect(r.state.phase).toBe("running")
    expect(r.changes.map((c) => c._tag)).toEqual(["HostFailed", "WaveAdmitted"])
    s = r.state
    const [a3] = s.waves[1]!.hosts
    r = step(s, new Tick({ now: 80 * S, hosts: [bad("a1"), good("a2", 0), bad(a3!)] }))
    expect(r.state.phase).toBe("reverted")
    expect(r.state.failed).toEqual(["a1", a3])
  })

  it("offline hosts do not block admission and are listed; a failure of a host not admitted is not counted", () => {
    const s = plan(spec({ soakMs: 0 }), hosts, 0)
    const w2 = s.waves[1]!.hosts[0]!
    // w2 reports a failed attempt at the target before being admitted (e.g. a stale report): ignored.
    const r = step(s, new Tick({ now: 1 * S, hosts: [offline("a1"), bad(w2)] }))
    expect(r.state.failed).toEqual([])
    expect(r.changes).toEqual([{ _tag: "WaveAdmitted", wave: 2, hosts: [w2], at: 1 * S }])
    const st = status(r.state, [offline("a1"), old(w2)], 1 * S)
    expect(st.offline).toContain("a1")
    expect(st.waitingFor).toEqual([{ host: w2, state: "updating" }])
    expect(st.waves[0]!.hosts).toEqual([{ host: "a1", state: "offline" }])
  })

  it("hosts that appear during the rollout join the last wave", () => {
    const s = plan(spec(), hosts, 0)
    const r = step(s, new Tick({ now: 1 * S, hosts: [good("a1", 0), old("a5")] }))
    expect(r.state.waves.at(-1)!.hosts).toContain("a5")
    expect(served(r.state, "a5")).toBe(OLD)
    expect(status(r.state, [old("a5")], 1 * S).waves.at(-1)!.hosts).toContainEqual({ host: "a5", state: "waiting" })
  })

  it("pause stops admission (failures still halt); resume goes on", () => {
    const s = plan(spec({ soakMs: 0 }), hosts, 0)
    const p = step(s, new Pause({ now: 1 * S }))
    expect(p.state.phase).toBe("paused")
    expect(step(p.state, new Tick({ now: 2 * S, hosts: [good("a1", 0)] })).changes).toEqual([])
    expect(step(p.state, new Tick({ now: 2 * S, hosts: [bad("a1")] })).state.phase).toBe("reverted")
    const q = step(p.state, new Resume({ now: 3 * S }))
    expect(q.state.phase).toBe("running")
    expect(step(q.state, new Tick({ now: 4 * S, hosts: [good("a1", 0)] })).changes.map((c) => c._tag)).toEqual(["WaveAdmitted"])
  })

  it("a stored state resumes where it was (the order is stable across restarts)", () => {
    const codec = Schema.parseJson(RolloutState)
    const ticks = [new Tick({ now: 70 * S, hosts: [good("a1", 0)] }), new Tick({ now: 200 * S, hosts: hosts.map((h) => good(h, 100 * S)) })]
    let live = plan(spec(), hosts, 0)
    let stored = Schema.encodeSync(codec)(plan(spec(), [...hosts].reverse(), 0))
    for (const t of ticks) {
      live = step(live, t).state
      stored = Schema.encodeSync(codec)(step(Schema.decodeSync(codec)(stored), t).state)
    }
    expect(Schema.decodeSync(codec)(stored)).toEqual(live)
    expect(live.waves.every((w) => w.admittedAt !== undefined)).toBe(true)
  })
})
