// Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by package/file,
// so a missed target can be traced to where the time goes.
//   node --import tsx bench/lib/profile.ts FILE.cpuprofile [-top 25]
import { readFileSync } from "node:fs"
import { parseFlags, UsageError } from "./flags.js"
import { runCli } from "./main.js"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

export interface Entry {
  readonly key: string
  readonly ms: number
  readonly pct: number
}

export interface ProfileSummary {
  /** For each of the top self-time functions, the call paths (4 frames up) that reach it, heaviest first. */
  readonly callers: ReadonlyArray<{ readonly fn: string; readonly paths: ReadonlyArray<Entry> }>
  readonly totalMs: number
  readonly idleMs: number
  readonly byFunction: ReadonlyArray<Entry>
  readonly byModule: ReadonlyArray<Entry>
  /** Inclusive time of functions (self + callees), for "which call costs what". */
  readonly inclusive: ReadonlyArray<Entry>
}

const moduleOf = (url: string): string => {
  if (url === "") return "(native/vm)"
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1]!
  if (url.startsWith("node:")) return url
  const d = /\/(dist|src)\/(.*)$/.exec(url)
  return d ? `${d[1]}/${d[2]}` : url
}

export const summarizeProfile = (file: string, top = 25): ProfileSummary => {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt)
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  let idle = 0
  const fn = new Map<string, number>()
  const mod = new Map<string, number>()
  const incl = new Map<string, number>()
  const label = (n: ProfileNode) => {
    const f = n.callFrame
    const name = f.functionName || "(anonymous)"
    return f.url ? `${name} ${moduleOf(f.url)}:${f.lineNumber + 1}` : name
  }
  for (const [id, ms] of self) {
    const n = byId.get(id)!
    const name = n.callFrame.functionName
    if (name === "(idle)" || name === "(program)") {
      if (name === "(idle)") idle += ms
    }
    const l = label(n)
    fn.set(l, (fn.get(l) ?? 0) + ms)
    const m = name.startsWith("(") ? name : moduleOf(n.callFrame.url)
    mod.set(m, (mod.get(m) ?? 0) + ms)
    // Inclusive: charge every distinct ancestor frame once.
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const a = label(byId.get(cur)!)
      if (!seen.has(a)) {
        seen.add(a)
        incl.set(a, (incl.get(a) ?? 0) + ms)
      }
    }
  }
  const busy = total - idle
  const callers = [...fn.entries()]
    .filter(([k]) => !k.startsWith("("))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([target]) => {
      const paths = new Map<string, number>()
      for (const [id, ms] of self) {
        if (label(byId.get(id)!) !== target) continue
        const chain: string[] = []
        for (let cur = parent.get(id); cur !== undefined && chain.length < 4; cur = parent.get(cur)) chain.push(label(byId.get(cur)!))
        const k = chain.join(" < ")
        paths.set(k, (paths.get(k) ?? 0) + ms)
      }
      return {
        fn: target,
        paths: [...paths.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([key, ms]) => ({ key, ms, pct: (100 * ms) / Math.max(busy, 1e-9) }))
      }
    })
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([k]) => k !== "(idle)" && k !== "(root)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, ms]) => ({ key, ms, pct: (100 * ms) / Math.max(busy, 1e-9) }))
  return { totalMs: total, idleMs: idle, byFunction: list(fn), byModule: list(mod), inclusive: list(incl), callers }
}

export const formatProfile = (s: ProfileSummary): string => {
  const sec = (title: string, es: ReadonlyArray<Entry>) =>
    [`${title}:`, ...es.map((e) => `  ${e.pct.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  ${e.key}`)].join("\n")
  return [
    `profile: ${s.totalMs.toFixed(0)} ms sampled, ${(s.totalMs - s.idleMs).toFixed(0)} ms busy (percentages are of busy time)`,
    sec("self time by module", s.byModule),
    sec("self time by function", s.byFunction),
    sec("inclusive time", s.inclusive),
    "callers of the top functions:",
    ...s.callers.map((c) => [`  ${c.fn}`, ...c.paths.map((e) => `    ${e.pct.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  < ${e.key}`)].join("\n"))
  ].join("\n")
}

runCli(import.meta.url, async (args) => {
  const file = args.find((a) => !a.startsWith("-") && a.endsWith(".cpuprofile"))
  if (!file) throw new UsageError("usage: profile.ts FILE.cpuprofile [-top N]")
  const f = parseFlags(args.filter((a) => a !== file), ["top"])
  process.stdout.write(formatProfile(summarizeProfile(file, f.int("top", 25))) + "\n")
})
