// The upload progress bar: pure formatting, plus a renderer that draws on a terminal only.
// Off a TTY (CI logs, pipes) it prints nothing at all, so scripts see exactly the registry's output.

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

export const formatBytes = (n: number): string =>
  n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : n >= KiB ? `${(n / KiB).toFixed(1)} KiB` : `${n} B`

export const formatRate = (bytesPerSecond: number): string =>
  Number.isFinite(bytesPerSecond) && bytesPerSecond > 0 ? `${formatBytes(Math.round(bytesPerSecond))}/s` : "-- /s"

/** `m:ss` or `h:mm:ss`; `--:--` when unknown. */
export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--"
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const ss = String(s % 60).padStart(2, "0")
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`
}

export interface ProgressState {
  readonly done: number
  readonly total: number
  readonly elapsedMs: number
}

/** One line: ` 45% [#########-----------] 115.2 MiB / 256.0 MiB  310.2 MiB/s  0:03 left`, at most `columns` wide. */
export const formatProgress = (state: ProgressState, columns = 80): string => {
  const { done, total, elapsedMs } = state
  const fraction = total > 0 ? Math.min(1, done / total) : 1
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4)
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : NaN
  const left = done >= total ? 0 : rate > 0 ? (total - done) / rate : NaN
  const tail = ` ${formatBytes(done)} / ${formatBytes(total)}  ${formatRate(rate)}  ${done >= total ? formatDuration(elapsedMs / 1000) : `${formatDuration(left)} left`}`
  const barWidth = Math.max(0, Math.min(30, columns - 1 - pct.length - 3 - tail.length))
  if (barWidth < 5) return (pct + tail).slice(0, Math.max(0, columns - 1))
  const filled = Math.round(fraction * barWidth)
  return `${pct} [${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]${tail}`
}

export interface ProgressBar {
  readonly update: (done: number) => void
  /** Draws the final state and ends the line (only if anything was drawn). */
  readonly finish: () => void
  /** Erases the line (on failure), so an error message starts on a clean line. */
  readonly clear: () => void
}

export interface Terminal {
  readonly isTTY?: boolean
  readonly columns?: number
  write(s: string): unknown
}

const silent: ProgressBar = { update: () => {}, finish: () => {}, clear: () => {} }

/** A bar for `total` bytes on `out` if it is a terminal (redrawn at most every `intervalMs`); otherwise silent. */
export const makeProgressBar = (total: number, out: Terminal, now: () => number = Date.now, intervalMs = 100): ProgressBar => {
  if (out.isTTY !== true) return silent
  const start = now()
  let last = -Infinity
  let done = 0
  let drawn = false
  const draw = () => {
    out.write(`\r${formatProgress({ done, total, elapsedMs: now() - start }, out.columns || 80)}\x1b[K`)
    drawn = true
  }
  return {
    update: (n) => {
      done = n
      const t = now()
      if (t - last >= intervalMs) {
        last = t
        draw()
      }
    },
    finish: () => {
      draw()
      out.write("\n")
    },
    clear: () => {
      if (drawn) out.write("\r\x1b[K")
    }
  }
}
