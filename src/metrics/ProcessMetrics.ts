// Process metrics under the names Prometheus' client libraries use (process_*, nodejs_*), sampled when
// scraped: CPU seconds, resident memory, heap, open and maximum file descriptors, start time, and the
// event loop's delay since the previous scrape.
import { Effect, Metric } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { monitorEventLoopDelay } from "node:perf_hooks"

const cpu = Metric.counter("process_cpu_seconds_total", { description: "user and system CPU time spent in seconds", incremental: true })
const rss = Metric.gauge("process_resident_memory_bytes", { description: "resident memory size in bytes" })
const heap = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use in bytes" })
const openFds = Metric.gauge("process_open_fds", { description: "open file descriptors" })
const maxFds = Metric.gauge("process_max_fds", { description: "maximum number of open file descriptors (soft limit)" })
const startTime = Metric.gauge("process_start_time_seconds", { description: "start time of the process since the Unix epoch in seconds" })
const lagMean = Metric.gauge("nodejs_eventloop_lag_seconds", { description: "mean event loop delay since the previous scrape in seconds" })
const lagMax = Metric.gauge("nodejs_eventloop_lag_max_seconds", { description: "largest event loop delay since the previous scrape in seconds" })

/** The soft open-files limit from /proc (Linux); undefined elsewhere. */
const readMaxFds = (): number | undefined => {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const soft = line?.split(/\s{2,}/)[1]
    return soft !== undefined && /^\d+$/.test(soft) ? Number(soft) : undefined
  } catch {
    return undefined
  }
}

const countFds = (): number | undefined => {
  try {
    return readdirSync("/proc/self/fd").length
  } catch {
    return undefined
  }
}

/** Starts the event-loop monitor; the returned effect samples every process metric. */
export const makeProcessSampler = Effect.sync(() => {
  const delay = monitorEventLoopDelay({ resolution: 20 })
  delay.enable()
  let cpuSeen = 0
  const started = Math.round(Date.now() / 1000 - process.uptime())
  return Effect.sync(() => {
    const usage = process.cpuUsage()
    const cpuNow = (usage.user + usage.system) / 1e6
    cpu.unsafeUpdate(cpuNow - cpuSeen, [])
    cpuSeen = cpuNow
    const mem = process.memoryUsage()
    rss.unsafeUpdate(mem.rss, [])
    heap.unsafeUpdate(mem.heapUsed, [])
    const fds = countFds()
    if (fds !== undefined) openFds.unsafeUpdate(fds, [])
    const max = readMaxFds()
    if (max !== undefined) maxFds.unsafeUpdate(max, [])
    startTime.unsafeUpdate(started, [])
    // The histogram's floor is its resolution; no samples yet reads as NaN.
    lagMean.unsafeUpdate(Number.isFinite(delay.mean) ? delay.mean / 1e9 : 0, [])
    lagMax.unsafeUpdate(delay.max / 1e9, [])
    delay.reset()
  })
})
