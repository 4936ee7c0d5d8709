// Benchmark 3, many small files: our Unpacker (extractLayers from src/agent/Unpacker.ts, called in-process)
// against GNU `tar xzf` of the same tar.gz into a fresh directory, for 20,000 small files and for
// 200,000 empty files in 200 directories (per-entry cost alone). Our extractor ends with a syncfs of the
// tree (the agent's durability promise); tar does not, so `tar xzf` + `sync -f` is shown too.
//   node --import tsx bench/smallfiles.ts [-count 20000] [-entries 200000] [-runs 5] [-workdir DIR]
import { mkdir, mkdtemp, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { extractLayers } from "../src/agent/Unpacker.js"
import { type DataFile, manyEntriesTarGz, smallFilesTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { runOk, warm } from "./lib/proc.js"
import { environment, row, type Row } from "./lib/report.js"
import { interleave } from "./lib/stats.js"

export const smallfiles: Bench = async (argv) => {
  const f = parseFlags(argv, ["count", "entries", "runs", "workdir"])
  const count = f.int("count", 20_000)
  const entries = f.int("entries", 200_000)
  const runs = f.int("runs", 5)
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    log(`smallfiles: making a tar.gz of ${count} small files and one of ${entries} empty files ...`)
    const small = await smallFilesTarGz(count)
    const many = await manyEntriesTarGz(entries, 200)
    // -workdir /dev/shm takes the disk out of the comparison (CPU cost of unpacking only).
    const work = await mkdtemp(path.join(f.str("workdir", os.tmpdir()), "bench-smallfiles-"))
    cleanup.add(() => rm(work, { recursive: true, force: true }))
    // Each run starts with the archive cached and no dirty pages left by the previous run.
    const fresh = async (name: string, data: DataFile) => {
      const dest = path.join(work, name)
      await rm(dest, { recursive: true, force: true })
      await runOk("sync", ["-f", work])
      await warm(data.path)
      await mkdir(dest)
      return dest
    }
    const warnings: string[] = []
    const compare = async (data: DataFile, what: string, n: number) => {
      const st = await interleave(
        n,
        {
          "tar xzf": async (i) => {
            const dest = await fresh(`tar${i}`, data)
            const r = await runOk("tar", ["-C", dest, "-xzf", data.path])
            await rm(dest, { recursive: true, force: true })
            return r.ms
          },
          "tar xzf + sync -f": async (i) => {
            const dest = await fresh(`tarsync${i}`, data)
            const t0 = performance.now()
            await runOk("tar", ["-C", dest, "-xzf", data.path])
            await runOk("sync", ["-f", dest])
            const ms = performance.now() - t0
            await rm(dest, { recursive: true, force: true })
            return ms
          },
          "Unpacker": async (i) => {
            const dest = await fresh(`ours${i}`, data)
            const t0 = performance.now()
            await extractLayers(dest, [{ label: "small@v1", file: data.path }], {
              keepSuid: false,
              log: (level, m) => void (warnings.length < 5 && warnings.push(`${level} ${m}`))
            })
            const ms = performance.now() - t0
            await rm(dest, { recursive: true, force: true })
            return ms
          }
        },
        log
      )
      rows.push(row({ metric: `tar xzf, ${what} (reference)`, unit: "ms", ours: st["tar xzf"] }))
      rows.push(row({
        metric: `Unpacker, ${what}`, unit: "ms", referenceName: "tar xzf", reference: st["tar xzf"], ours: st["Unpacker"],
        target: { kind: "ratio<=", value: 1.5 }, note: "in-process extractLayers, including its final syncfs of the tree"
      }))
      rows.push(row({ metric: `Unpacker, ${what}`, unit: "ms", referenceName: "tar xzf + sync -f", reference: st["tar xzf + sync -f"], ours: st["Unpacker"] }))
    }
    await compare(small, `${count} files`, runs)
    // Fewer runs: each takes seconds, and the spread is small.
    await compare(many, `${entries} empty files in 200 dirs`, Math.max(1, Math.ceil(runs / 2)))
    if (warnings.length) log(`smallfiles: unpacker warnings: ${warnings.join("; ")}`)
    return {
      name: "smallfiles",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { count, entries, runs, archiveBytes: small.bytes, entriesArchiveBytes: many.bytes, workdir: f.str("workdir", os.tmpdir()) },
      rows
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, smallfiles)
