// The web view's pages as pure functions: escaping of everything agents and operators can name, the
// hosts table's filter/sort/paging, the history's "what changed" and Rollback forms, the rollout's
// controls, the timeline's bounds, and the decoders against the registry's own JSON renderers.
import { Effect, FastCheck as fc } from "effect"
import { describe, expect, it } from "vitest"
import { Principal } from "../../src/domain/Principal.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { historyJson } from "../../src/registry/HistoryView.js"
import type { HostRow } from "../../src/registry/HostStatus.js"
import { renderConfiguration, renderSummary } from "../../src/registry/StatusView.js"
import { escape, html, raw } from "../../src/web/Html.js"
import { configurationPage } from "../../src/web/pages/Configuration.js"
import { fleetPage } from "../../src/web/pages/Fleet.js"
import { changes } from "../../src/web/pages/HistoryTable.js"
import { PAGE_SIZE } from "../../src/web/pages/HostsTable.js"
import { errorPage } from "../../src/web/pages/Layout.js"
import { MAX_ROWS, timelinePage } from "../../src/web/pages/Timeline.js"
import { ConfigSummary, decodeConfigurationStatus, decodeFleetStatus, decodeHistory, decodeRegistryEvent, TimelineEntry } from "../../src/web/WebModel.js"
import { ctx, H1, H2, H3, host, manyHosts, NOW, rollout, state, status, XSS } from "./pagesFixtures.js"

/** Host names of the hosts table, in the order shown (entities decoded back). */
const shownHosts = (page: string) =>
  [...page.matchAll(/<td class="host">(.*?)<\/td>/gs)].map((m) => m[1]!.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&"))

const page = (hosts = manyHosts(10), query = "", extra: Partial<Parameters<typeof configurationPage>[0]> = {}) =>
  configurationPage({ status: status(hosts), history: [], rollout: undefined, ...extra }, ctx(query))

/** No element or attribute that the data could have injected: every "<img" / "onerror=" is escaped. */
const expectInert = (out: string) => {
  expect(out).not.toMatch(/<img/i)
  expect(out).not.toMatch(/<script(?! src="\/assets\/app\.js" defer><\/script>)/i)
  for (const tag of out.match(/<[^>]*>/g) ?? []) expect(tag).not.toMatch(/\son[a-z]+\s*=/i)
}

describe("html", () => {
  it("escapes every interpolation and passes Html and raw through", () => {
    expect(html`<td>${XSS}</td>`.text).toBe("<td>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</td>")
    expect(html`<a title="${`" onmouseover='x'`}">`.text).toBe(`<a title="&quot; onmouseover=&#39;x&#39;">`)
    expect(html`<p>${html`<b>${"<i>"}</b>`}${raw("<br>")}${[1, "<", undefined, false, null]}</p>`.text).toBe("<p><b>&lt;i&gt;</b><br>1&lt;</p>")
  })

  it("never lets a string make markup (property)", () => {
    fc.assert(
      fc.property(fc.string(), fc.array(fc.string()), (s, xs) => {
        const out = html`<td title="${s}">${s}${xs}</td>`.text
        const inner = out.slice('<td title="'.length, -"</td>".length)
        expect(inner.replace(/^[^"]*">/, "")).not.toMatch(/[<>]/)
        expect(out.split('"').length).toBe(3)
        expect(escape(s).length).toBeGreaterThanOrEqual(s.length)
      })
    )
  })
})

describe("fleet page", () => {
  const summary = (name: string, counts: Partial<ConfigSummary> = {}) =>
    new ConfigSummary({ Name: name, Hash: H1, Hosts: 2, Current: 2, Behind: 0, Deploying: 0, Failed: 0, Offline: 0, ...counts })

  it("lists each configuration with counts, a bar, its last change and a running rollout", () => {
    const out = fleetPage(
      {
        configurations: [
          { summary: summary("p1"), last: state(H1, [["code", "v2"]], true, "2026-12-03T11:55:00Z"), rollout: rollout("running") },
          { summary: summary("p 2/x", { Hosts: 4, Current: 1, Failed: 3 }), last: undefined, rollout: rollout("completed") }
        ]
      },
      ctx()
    )
    expect(out).toMatch(/^<!doctype html>/)
    expect(out).toContain('<a href="/c/p1">p1</a>')
    expect(out).toContain('<a href="/c/p%202%2Fx">p 2/x</a>')
    expect(out).toContain("5 min ago</time> by <span")
    expect(out).toContain(">alice</span>")
    expect(out).toContain('<td class="num state-failed">3</td>')
    expect(out).toMatch(/<rect class="fill-failed" x="25\.00" y="0" width="75\.00"/)
    expect(out).toContain("running</span> wave 1/2, 1/2 healthy")
    expect(out.match(/wave \d+\/\d+/g)).toHaveLength(1) // a completed rollout is not "running"
  })

  it("escapes configuration names and who made the change", () => {
    const last = state(H1, [["code", "v1"]], true)
    const out = fleetPage({ configurations: [{ summary: summary(XSS), last: { ...last, Who: { ...last.Who, Comment: XSS } } as typeof last, rollout: undefined }] }, ctx())
    expectInert(out)
    expect(out).toContain("&lt;img src=x")
  })
})

describe("configuration page: hosts", () => {
  it("shows host names, messages and agent versions from agents as text", () => {
    const out = page([host(XSS, "failed", { Reason: XSS, Lines: ["ok", `</td><script>alert(1)</script>`], AgentVersion: XSS })])
    expectInert(out)
    expect(shownHosts(out)).toEqual([XSS])
    expect(out).toContain("&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;")
  })

  it("pages 5,000 hosts 100 at a time, with links to the others, and clamps a page past the end", () => {
    const hosts = manyHosts(5000)
    const first = page(hosts)
    expect(shownHosts(first)).toHaveLength(PAGE_SIZE)
    expect(shownHosts(first)[0]).toBe("host-00000")
    expect(first).toContain("page 1 of 50 (5000 hosts)")
    expect(first).toContain('href="?page=2#hosts" rel="next"')
    const p7 = page(hosts, "page=7")
    expect(shownHosts(p7)[0]).toBe("host-00600")
    expect(p7).toContain('href="?page=6#hosts" rel="prev"')
    const past = page(hosts, "page=999")
    expect(shownHosts(past).at(-1)).toBe("host-04999")
    expect(past).toContain("page 50 of 50")
    expect(shownHosts(page(hosts, "page=-3"))[0]).toBe("host-00000")
  })

  it("filters by state, keeping the filter in sort and page links", () => {
    const hosts = manyHosts(1000)
    const out = page(hosts, "state=failed")
    const names = shownHosts(out)
    expect(names).toHaveLength(100)
    expect(names.every((n) => hosts.find((h) => h.Host === n)!.State === "failed")).toBe(true)
    expect(out).toContain("page 1 of 2 (200 hosts)")
    expect(out).toContain('href="?state=failed&amp;page=2#hosts"')
    expect(out).toContain('href="?state=failed&amp;sort=state#hosts"')
    expect(out).toContain('<strong class="filter-on">failed (200)</strong>')
    expect(shownHosts(page(hosts, "state=nonsense"))).toHaveLength(100) // unknown filter: all
  })

  it("sorts by each column, both ways, ties by host name", () => {
    const hosts = [
      host("b", "failed", { Since: "2026-12-03T09:00:00Z", AgentVersion: "0.2.0" }),
      host("a", "current", { Since: "2026-12-03T10:00:00Z", AgentVersion: "0.1.0" }),
      host("c", "offline", { Since: "2026-12-03T08:00:00Z", LastSeen: "2026-12-01T00:00:00Z", AgentVersion: "0.3.0" }),
      host("d", "current", { Since: "2026-12-03T07:00:00Z", AgentVersion: "0.1.0" })
    ]
    expect(shownHosts(page(hosts))).toEqual(["a", "b", "c", "d"])
    expect(shownHosts(page(hosts, "sort=host&dir=desc"))).toEqual(["d", "c", "b", "a"])
    expect(shownHosts(page(hosts, "sort=state"))).toEqual(["a", "d", "b", "c"]) // current, behind, deploying, failed, offline
    expect(shownHosts(page(hosts, "sort=since"))).toEqual(["d", "c", "b", "a"])
    expect(shownHosts(page(hosts, "sort=seen&dir=desc"))).toEqual(["a", "b", "d", "c"]) // connected first
    expect(shownHosts(page(hosts, "sort=version&dir=desc"))).toEqual(["c", "b", "a", "d"])
    const out = page(hosts, "sort=since")
    expect(out).toContain('<th aria-sort="ascending"><a href="?sort=since&amp;dir=desc#hosts">Since ▲</a></th>')
  })
})

describe("configuration page: history", () => {
  const history = [
    state(H1, [["code", "v3"], ["conf", "c1"], ["web", "w1"]], true, "2026-12-03T11:00:00Z"),
    state(H2, [["code", "v2"], ["conf", "c1"], ["old", "o1"]], false, "2026-12-03T10:00:00Z"),
    state(H3, [["code", "v1"]], false, "2026-12-03T09:00:00Z")
  ]

  it("says what changed between consecutive states", () => {
    expect(changes(history[0]!.Layers, history[1]!.Layers)).toEqual([
      { kind: "changed", name: "code", from: "v2", to: "v3" },
      { kind: "added", name: "web", version: "w1" },
      { kind: "removed", name: "old", version: "o1" }
    ])
    expect(changes(history[2]!.Layers, history[2]!.Layers)).toEqual([])
    const out = page([], "", { history })
    expect(out).toContain('<li class="changed">code v2 → v3</li><li class="added">+ web w1</li><li class="removed">− old o1</li>')
    expect(out).toContain('<li class="changed">code v1 → v2</li><li class="added">+ conf c1</li><li class="added">+ old o1</li>')
    expect(out).toContain("first state")
  })

  it("has a Rollback form per past state with the csrf token, its hash and the hash on screen as expect", () => {
    const out = page([], "", { history })
    const forms = [...out.matchAll(/<form method="post" action="\/c\/p1\/rollback"[^]*?<\/form>/g)].map((m) => m[0])
    expect(forms).toHaveLength(2)
    for (const [i, hash] of [H2, H3].entries()) {
      expect(forms[i]).toContain('<input type="hidden" name="csrf" value="CSRF-TOKEN">')
      expect(forms[i]).toContain(`<input type="hidden" name="hash" value="${hash}">`)
      expect(forms[i]).toContain(`<input type="hidden" name="expect" value="${H1}">`)
    }
    expect(out).toContain("<strong>current</strong>")
  })

  it("shows the 100 newest states; the oldest shown still says what changed", () => {
    const many = Array.from({ length: 101 }, (_, i) => state(`${i}`.padStart(64, "0"), [["code", `v${101 - i}`]], i === 0))
    const out = page([], "", { history: many })
    expect(out.match(/<tr class="(?:current)?">/g)).toHaveLength(100)
    expect(out).toContain('<li class="changed">code v1 → v2</li>')
    expect(out).not.toContain("first state")
    expect(out).toContain("Older states are not shown")
  })

  it("marks a rollout's target with its phase", () => {
    const target = state(H2, [["code", "v2"]], false)
    const out = page([], "", { history: [{ ...target, Rollout: { Phase: "running", From: H1 } } as typeof target, state(H1, [["code", "v1"]], true)] })
    expect(out).toContain('<span class="phase phase-running" title="">rollout running</span>')
  })

  it("escapes component names, versions and who", () => {
    const bad = state(H2, [[XSS, XSS]], false)
    const out = page([], "", { history: [{ ...bad, Who: { ...bad.Who, Comment: XSS } } as typeof bad, state(H3, [["x", "1"]])] })
    expectInert(out)
  })
})

describe("configuration page: rollout", () => {
  const forms = (out: string) => [...out.matchAll(/action="\/c\/p1\/rollout\/(\w+)"/g)].map((m) => m[1])

  it("offers pause and abort while running, resume and abort while paused, nothing once finished", () => {
    expect(forms(page([], "", { rollout: rollout("running") }))).toEqual(["pause", "abort"])
    expect(forms(page([], "", { rollout: rollout("paused") }))).toEqual(["resume", "abort"])
    expect(forms(page([], "", { rollout: rollout("completed") }))).toEqual([])
    expect(page([], "", { rollout: rollout("running") })).toMatch(/rollout\/pause"[^]*?name="csrf" value="CSRF-TOKEN"/)
  })

  it("lists each wave's hosts, escaped and bounded", () => {
    const big = Array.from({ length: 300 }, (_, i) => [`w${i}`, i < 10 ? "failed" : "waiting"] as const)
    const out = page([], "", { rollout: rollout("running", [[[XSS, "healthy"]], big]) })
    expectInert(out)
    expect(out).toContain("and 250 more (250 waiting)")
    expect(out).not.toContain(">w50 <")
  })
})

describe("fragments, errors, timeline", () => {
  it("renders only <main>'s contents for ?fragment=1, with the notice", () => {
    const out = configurationPage({ status: status(manyHosts(3)), history: [], rollout: undefined }, ctx("", { fragment: true, notice: { kind: "error", text: XSS } }))
    expect(out).not.toContain("<html")
    expect(out).not.toContain("<main")
    expect(out).toMatch(/^<p class="notice notice-error" role="alert">&lt;img/)
    expect(out).toContain("<h1>p1</h1>")
  })

  it("full pages load only /assets, and mark which configuration they show", () => {
    const out = page()
    expect([...out.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]).filter((u) => !u!.startsWith("/") && !u!.startsWith("?"))).toEqual([])
    expect(out).toContain('<main id="live" data-config="p1" data-path="/c/p1">')
    expect(out).not.toMatch(/ style=/)
    expect(errorPage(404, XSS, ctx())).toContain("&lt;img")
  })

  it("draws the last 24 h: one lane per host, one mark per outcome, older ones left out, bounded", () => {
    const e = (Host: string, minutesAgo: number, Outcome: TimelineEntry["Outcome"]) =>
      new TimelineEntry({ Host, Time: new Date(NOW.getTime() - minutesAgo * 60_000).toISOString(), Hash: H1, Outcome })
    const out = timelinePage({ name: "p1", entries: [e("b", 10, "failed"), e("a", 60, "deployed"), e("a", 25 * 60, "deployed"), e(XSS, 5, "rolled-back")] }, ctx())
    expectInert(out)
    expect(out.match(/<rect class="outcome-[a-z-]+" x=/g)).toHaveLength(3)
    expect(out.match(/class="hostlabel"/g)).toHaveLength(3)
    expect(out).toContain("1 deployed, 1 rolled-back, 1 failed, 0 refused, 0 deploying")
    // x: 60 min ago of 24 h → 190 + (23/24)·760
    expect(out).toContain(`<rect class="outcome-deployed" x="${(190 + (23 / 24) * 760 - 1.5).toFixed(1)}"`)
    const many = Array.from({ length: 1000 }, (_, i) => e(`h${i}`, i % 1400, "deployed"))
    const big = timelinePage({ name: "p1", entries: many }, ctx())
    expect(big.match(/class="hostlabel"/g)).toHaveLength(MAX_ROWS)
    expect(big).toContain(`${1000 - MAX_ROWS} more host(s) not drawn`)
  })
})

describe("WebModel decodes what the registry prints", () => {
  const row = (h: string, hash: string): HostRow => ({
    configuration: "p1", host: h, kind: "agent", fingerprint: "SHA256:k", address: "10.0.0.1", agentVersion: "0.1.0", hash, target: H1,
    outcome: "deployed", reason: "", lines: ["line"], started: "", durationMs: 3, since: "2026-12-03T11:00:00Z", lastReport: "", lastSeen: "", connected: true
  })
  const tab = () => ""

  it("status -name N -json, status -json, history -json (with a rollout target), an events line", async () => {
    const one = await Effect.runPromise(decodeConfigurationStatus(renderConfiguration("p1", H1, [row("a", H1), row(XSS, H2)], tab, true)))
    expect(one.Hosts.map((h) => [h.Host, h.State])).toEqual([["a", "current"], [XSS, "behind"]])
    const all = await Effect.runPromise(decodeFleetStatus(renderSummary([{ name: "p1", hash: H1 }], [row("a", H1)], tab, true)))
    expect(all[0]!.Current).toBe(1)
    const who = new Principal({ user: "operator", fingerprint: "SHA256:op", comment: XSS })
    const st = (id: number, hash: string) => ({ id, configuration: "p1", hash: hash as Sha256, time: NOW, who, layers: [{ component: "code", version: `v${id}`, hash: H3 as Sha256, ctime: NOW }] })
    const hist = await Effect.runPromise(
      decodeHistory(historyJson({ states: [st(2, H2), st(1, H1)], currentId: 1, signatures: new Map(), rollouts: new Map([[2, { phase: "running", from: H1, events: [{ time: NOW.toISOString(), text: "started", actor: "x" }] }]]) }))
    )
    expect(hist.map((h) => [h.Hash, h.Current, h.Rollout?.Phase])).toEqual([[H2, false, "running"], [H1, true, undefined]])
    const ev = await Effect.runPromise(decodeRegistryEvent('{"Event":"host","Name":"p1","Host":"a","State":"current","Hash":"x"}'))
    expect(ev.Event).toBe("host")
  })
})
