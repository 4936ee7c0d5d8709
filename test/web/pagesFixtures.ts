// Data for the page tests and the `web` bench: what the registry's JSON commands answer, decoded.
import { ConfigurationStatus, HistoryEntry, HostEntry, type HostState, hostStates, type PageContext, RolloutStatus } from "../../src/web/WebModel.js"

export const H1 = "1".repeat(64)
export const H2 = "2".repeat(64)
export const H3 = "3".repeat(64)
export const NOW = new Date("2026-12-03T12:00:00.000Z")
export const XSS = `<img src=x onerror="alert(1)">`

export const host = (name: string, state: HostState, over: Partial<HostEntry> = {}): HostEntry => ({
    Host: name,
    Kind: "agent",
    State: state,
    Hash: state === "current" ? H1 : H2,
    Target: H1,
    Outcome: state === "failed" ? "failed" : "deployed",
    Reason: state === "failed" ? "script exited 1" : "",
    Lines: [],
    Since: "2026-12-03T11:00:00.000Z",
    LastSeen: "2026-12-03T11:30:00.000Z",
    LastReport: "2026-12-03T11:30:00.000Z",
    Connected: state !== "offline",
    AgentVersion: "0.1.0",
    Fingerprint: "SHA256:k",
    Address: "10.0.0.1",
    Started: "",
    DurationMs: 0,
    ...over
})

/** `n` hosts named host-00000…, states cycling through every state. */
export const manyHosts = (n: number): ReadonlyArray<HostEntry> =>
  Array.from({ length: n }, (_, i) => host(`host-${String(i).padStart(5, "0")}`, hostStates[i % hostStates.length]!))

export const status = (hosts: ReadonlyArray<HostEntry>, name = "p1", hash = H1): ConfigurationStatus => ({ Name: name, Hash: hash, Hosts: hosts })

export const state = (hash: string, layers: ReadonlyArray<readonly [string, string]>, current = false, time = "2026-12-03T10:00:00.000Z") =>
  new HistoryEntry({
    Time: time,
    Hash: hash,
    Who: { User: "operator", Fingerprint: "SHA256:op", Comment: "alice" },
    Layers: layers.map(([Name, Version]) => ({ Name, Version, Hash: "f".repeat(64) })),
    Current: current
  })

export const rollout = (phase: RolloutStatus["Phase"], waves: ReadonlyArray<ReadonlyArray<readonly [string, string]>> = [[["a", "healthy"]], [["b", "waiting"]]]) =>
  new RolloutStatus({
    Name: "p1",
    From: H2,
    To: H1,
    Phase: phase,
    Started: "2026-12-03T11:00:00Z",
    StartedBy: "SHA256:op alice",
    Settings: { Waves: "1,100%", SoakMs: 30000, MaxFailures: 0, OnFailure: "revert", Canary: [] },
    Waves: waves.map((hs, i) => ({ Wave: i + 1, ...(i === 0 ? { Admitted: "2026-12-03T11:00:01Z" } : {}), Hosts: hs.map(([Host, State]) => ({ Host, State })) })),
    WaitingFor: ["a"],
    Offline: [],
    Failed: [],
    Events: [{ Time: "2026-12-03T11:00:00Z", Text: "started" }]
  })

export const ctx = (query = "", over: Partial<PageContext> = {}): PageContext => ({ csrf: "CSRF-TOKEN", now: NOW, query: new URLSearchParams(query), ...over })
