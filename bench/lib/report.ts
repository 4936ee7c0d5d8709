// Result rows (reference, ours, ratio, target, PASS/MISS), the printed table and bench/results/<name>.json.
import { mkdir, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { root } from "./registry.js"
import { fmtNum, fmtStat, type Stat } from "./stats.js"

export interface Target {
  /** ratio >= value, ratio <= value, or an absolute bound on `ours`. */
  readonly kind: "ratio>=" | "ratio<=" | "ours>=" | "ours<="
  readonly value: number
}

export interface Row {
  readonly metric: string
  readonly unit: string
  readonly referenceName?: string
  readonly reference?: Stat
  readonly ours: Stat
  /** ours.median / reference.median (for times, lower is better; for rates, higher). */
  readonly ratio?: number
  readonly target?: Target
  readonly pass?: boolean
  readonly note?: string
}

export const row = (r: Omit<Row, "ratio" | "pass">): Row => {
  const ratio = r.reference && r.reference.median > 0 ? r.ours.median / r.reference.median : undefined
  let pass: boolean | undefined
  if (r.target) {
    const x = r.target.kind.startsWith("ratio") ? ratio : r.ours.median
    if (x !== undefined && Number.isFinite(x)) pass = r.target.kind.endsWith(">=") ? x >= r.target.value : x <= r.target.value
  }
  return { ...r, ...(ratio !== undefined ? { ratio } : {}), ...(pass !== undefined ? { pass } : {}) }
}

const targetText = (t: Target | undefined): string => {
  if (!t) return ""
  const op = t.kind.endsWith(">=") ? "≥" : "≤"
  return t.kind.startsWith("ratio") ? `${op}${t.value}×` : `${op}${fmtNum(t.value)}`
}

export const formatTable = (rows: ReadonlyArray<Row>): string => {
  const header = ["metric", "unit", "reference", "ours", "ratio", "target", ""]
  const cells = rows.map((r) => [
    r.metric + (r.referenceName ? ` (vs ${r.referenceName})` : ""),
    r.unit,
    r.reference ? fmtStat(r.reference) : "",
    fmtStat(r.ours),
    r.ratio !== undefined ? `${r.ratio.toFixed(2)}×` : "",
    targetText(r.target),
    r.pass === undefined ? (r.target ? "n/a" : "") : r.pass ? "✓ PASS" : "✗ MISS"
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: ReadonlyArray<string>) => c.map((x, i) => x.padEnd(widths[i]!)).join("  ").trimEnd()
  const notes = rows.filter((r) => r.note).map((r) => `  * ${r.metric}: ${r.note}`)
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.map(line), ...(notes.length ? ["", ...notes] : [])].join("\n")
}

export interface BenchResult {
  readonly name: string
  readonly startedAt: string
  readonly durationMs: number
  readonly environment: Record<string, unknown>
  readonly settings: Record<string, unknown>
  readonly rows: ReadonlyArray<Row>
  readonly extra?: Record<string, unknown>
}

export const writeResult = async (res: BenchResult): Promise<string> => {
  const dir = path.join(root, "bench", "results")
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, `${res.name}.json`)
  await writeFile(file, JSON.stringify(res, null, 2) + "\n")
  return file
}

/** Machine facts worth keeping next to the numbers (load matters: the cores are shared). */
export const environment = async (): Promise<Record<string, unknown>> => {
  const os = await import("node:os")
  const { run } = await import("./proc.js")
  const sshv = await run("ssh", ["-V"]).catch(() => undefined)
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    loadavg: os.loadavg(),
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    openssh: sshv?.stderr.trim()
  }
}
