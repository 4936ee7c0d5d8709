// The timeline's bounded store (Timeline.ts makeStore): the 24 h window, the cap per host and in all.
import { describe, expect, it } from "vitest"
import { makeStore, timelineOutcome } from "../../src/registry/Timeline.js"

const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000)
const entry = (host: string, s: number) => ({ host, time: at(s), hash: "h", outcome: "deployed" as const })

describe("timeline store", () => {
  it("keeps only the window, sorted by host then time", () => {
    const store = makeStore({ perHost: 10, total: 100, windowMs: 60_000 })
    store.record("c", entry("b", 0))
    store.record("c", entry("a", 30))
    store.record("c", entry("b", 50))
    store.record("other", entry("a", 50))
    expect(store.entries("c", at(70).getTime()).map((e) => `${e.host}@${e.time.getTime() - at(0).getTime()}`)).toEqual(["a@30000", "b@50000"])
    expect(store.entries("c", at(200).getTime())).toEqual([])
    expect(store.size()).toBe(0)
  })

  it("caps each host and the whole store, dropping the oldest", () => {
    const store = makeStore({ perHost: 3, total: 5, windowMs: 3_600_000 })
    for (let i = 0; i < 10; i++) store.record("c", entry("a", i))
    expect(store.entries("c", at(10).getTime()).map((e) => e.time)).toEqual([at(7), at(8), at(9)])
    for (let i = 10; i < 13; i++) store.record("c", entry("b", i))
    expect(store.size()).toBe(5)
    expect(store.entries("c", at(13).getTime()).map((e) => `${e.host}${e.time.getTime() / 1000 - at(0).getTime() / 1000}`)).toEqual(["a8", "a9", "b10", "b11", "b12"])
    for (let i = 0; i < 5000; i++) store.record("c", entry(`h${i}`, 20 + i / 1000))
    expect(store.size()).toBe(5)
  })

  it("shows unpack and download failures as failed", () => {
    expect(["deployed", "unpack-refused", "download-failed", "rolled-back", "refused", "deploying", "failed"].map((o) => timelineOutcome(o as never)))
      .toEqual(["deployed", "failed", "failed", "rolled-back", "refused", "deploying", "failed"])
  })
})
