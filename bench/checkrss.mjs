// How much the layer check grows this process's RSS, and how long it takes: the registry's addver
// check (checkLayerInWorker, the built dist/ module) or the same reading on this thread
// (checkLayerFile, -inline), on a file the bench made (bench/upload.ts -large 1G makes the 1 GiB one).
// VmRSS is sampled every 20 ms from just before the check to its end; growth = peak - before.
// Plain JavaScript on purpose: under `--import tsx` the worker would load tsx too and measure that.
//   node bench/checkrss.mjs [-file F] [-runs 3] [-inline]
import { existsSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"

const args = process.argv.slice(2)
const flag = (name) => {
  const i = args.indexOf(`-${name}`)
  return i < 0 ? undefined : args[i + 1]
}
const file = flag("file") ?? "/tmp/deploy-tools-bench-data/random-1073741824.tar.gz"
const runs = Number(flag("runs") ?? 3)
const inline = args.includes("-inline")

const vmRssKiB = () => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN)

const main = async () => {
  const built = path.resolve("dist/archive/LayerCheck.js")
  if (!existsSync(built)) throw new Error("dist/archive/LayerCheck.js missing: npm run build first")
  if (!existsSync(file)) throw new Error(`${file} missing: bench/upload.ts -large makes it`)
  const m = await import(pathToFileURL(built).href)
  const check = inline ? m.checkLayerFile(file, "x") : m.checkLayerInWorker(file, "x", { hash: true })
  for (let run = 1; run <= runs; run++) {
    await new Promise((r) => setTimeout(r, 500))
    const before = vmRssKiB()
    let peak = before
    const timer = setInterval(() => (peak = Math.max(peak, vmRssKiB())), 20)
    const t0 = performance.now()
    const r = await Effect.runPromise(check)
    const ms = performance.now() - t0
    clearInterval(timer)
    peak = Math.max(peak, vmRssKiB())
    const mb = r.bytes / 2 ** 20
    console.log(
      `${inline ? "inline" : "worker"} run ${run}: ${mb.toFixed(0)} MiB in ${ms.toFixed(0)} ms (${(mb / (ms / 1000)).toFixed(0)} MiB/s), ` +
        `RSS before ${(before / 1024).toFixed(1)} MiB, growth ${((peak - before) / 1024).toFixed(1)} MiB; load ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`
    )
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
