// `npm run bench`: every benchmark in turn (soak excluded: `npm run soak`), then one summary table.
// Each writes bench/results/<name>.json. Flags: [-only upload,download,...] [-runs 5] [-size 256M] [-large 1G]
// [-quick] (32 MiB files, 3 runs, no large upload, short windows: a smoke test, not a measurement).
import { parseFlags } from "./lib/flags.js"
import { readFileSync } from "node:fs"
import { log, publish, runCli, type Bench } from "./lib/main.js"
import { environment, type BenchResult, type Row } from "./lib/report.js"
import { capacity } from "./capacity.js"
import { download } from "./download.js"
import { metrics } from "./metrics.js"
import { pgblobs } from "./pgblobs.js"
import { propagation } from "./propagation.js"
import { smallfiles } from "./smallfiles.js"
import { upload } from "./upload.js"
import { watchers } from "./watchers.js"
import { web } from "./web.js"

const all: Record<string, Bench> = { upload, download, smallfiles, propagation, watchers, capacity, metrics, web, pgblobs }

const runAll: Bench = async (argv) => {
  const f = parseFlags(argv, ["only", "runs", "size", "large"], ["quick"])
  const quick = f.bool("quick")
  const runs = String(f.int("runs", quick ? 3 : 5))
  const size = f.str("size", quick ? "32M" : "256M")
  const large = f.str("large", quick ? "0" : "1G")
  const only = f.str("only", Object.keys(all).join(",")).split(",").filter((x) => x !== "")
  for (const n of only) if (!(n in all)) throw new Error(`unknown benchmark ${n} (known: ${Object.keys(all).join(", ")})`)
  const args: Record<string, string[]> = {
    upload: ["-runs", runs, "-size", size, "-large", large],
    download: ["-runs", runs, "-size", size],
    smallfiles: ["-runs", runs, ...(quick ? ["-count", "2000", "-entries", "20000"] : [])],
    propagation: quick ? ["-changes", "5"] : [],
    watchers: quick ? ["-n", "100", "-idle", "3s"] : ["-restart"],
    capacity: ["-runs", runs, ...(quick ? ["-window", "2s", "-ctlruns", "5"] : [])],
    metrics: ["-runs", runs, ...(quick ? ["-window", "1s", "-scrapes", "5"] : [])],
    web: ["-runs", quick ? "5" : "20"],
    pgblobs: ["-runs", runs, "-size", quick ? "16M" : "64M"]
  }
  const started = Date.now()
  const rows: Row[] = []
  const failures: string[] = []
  for (const n of only) {
    log(`=== ${n} ${args[n]!.join(" ")}`)
    try {
      const res: BenchResult = await all[n]!(args[n]!)
      await publish(res)
      rows.push(...res.rows.map((r) => ({ ...r, metric: `${n}: ${r.metric}` })))
    } catch (e) {
      failures.push(`${n}: ${(e as Error).message}`)
      log(`${n} FAILED: ${(e as Error).message}`)
    }
  }
  const env = await environment()
  log(`load average at end: ${(env["loadavg"] as number[]).map((x) => x.toFixed(1)).join(" ")} (the cores may be shared)`)
  if (failures.length) process.stdout.write(`\nfailed: ${failures.join("\n        ")}\n`)
  return {
    name: "all",
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    environment: env,
    settings: { only, runs, size, large, quick },
    rows,
    extra: { failures }
  }
}

/**
 * The flags as typed after `npm run bench`. Without `--`, npm takes `-only x`, `-runs 5`, `-quick` as its
 * own config (it drops `-only`'s value as invalid and passes only the stray `5`), so `npm run bench -only
 * upload -runs 5` would run everything with the defaults: read them from npm's own command line instead
 * (Linux /proc, which the benchmarks need anyway). Run directly, or with `--`, the arguments are as given.
 */
const typedArgs = (argv: ReadonlyArray<string>): ReadonlyArray<string> => {
  if (process.env["npm_lifecycle_event"] !== "bench") return argv
  try {
    let pid = process.ppid // sh -c "… bench/run.ts", then npm
    for (let depth = 0; depth < 4 && pid > 1; depth++) {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((x) => x !== "")
      const at = cmd.indexOf("bench")
      if (at > 0 && cmd.slice(0, at).some((x) => x === "run" || x === "run-script")) {
        const rest = cmd.slice(at + 1)
        return rest[0] === "--" ? rest.slice(1) : rest
      }
      pid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1])
    }
  } catch {
    // not Linux, or the process is gone: the arguments as npm passed them
  }
  return argv
}

// The summary of every row is printed last and written to bench/results/all.json.
runCli(import.meta.url, (argv) => runAll(typedArgs(argv)).then(publish))
