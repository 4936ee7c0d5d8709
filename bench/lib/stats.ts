// Repetition and summary statistics: every figure is the median of N (>= 5) runs with its min-max.

export interface Stat {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
  readonly samples: ReadonlyArray<number>
}

export const summarize = (samples: ReadonlyArray<number>): Stat => {
  if (samples.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0, samples: [] }
  const s = [...samples].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length, samples: [...samples] }
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export const percentile = (samples: ReadonlyArray<number>, p: number): number => {
  if (samples.length === 0) return NaN
  const s = [...samples].sort((a, b) => a - b)
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[rank]!
}

/** Maps every sample through `f` (e.g. seconds -> MB/s); min and max swap when `f` is decreasing. */
export const mapStat = (st: Stat, f: (x: number) => number): Stat => summarize(st.samples.map(f))

/**
 * Runs `once` n times (after `before`, e.g. warming the page cache, which is not timed) and summarizes
 * the numbers it returns. Runs alternate between variants when the caller interleaves calls, so
 * slow drift on a shared machine hits both sides alike.
 */
export const repeat = async (n: number, once: (i: number) => Promise<number>, before?: (i: number) => Promise<void>): Promise<Stat> => {
  const samples: number[] = []
  for (let i = 0; i < n; i++) {
    if (before) await before(i)
    samples.push(await once(i))
  }
  return summarize(samples)
}

/** Runs several variants interleaved (A B C A B C ...), n rounds; returns one Stat per variant. */
export const interleave = async <K extends string>(
  n: number,
  variants: Record<K, (i: number) => Promise<number>>,
  log?: (msg: string) => void
): Promise<Record<K, Stat>> => {
  const keys = Object.keys(variants) as K[]
  const samples = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>
  for (let i = 0; i < n; i++) {
    // Each round starts one variant later: a variant that leaves work behind (dirty pages, a cold cache, a
    // busy registry) must not always slow the same next one.
    for (const k of [...keys.slice(i % keys.length), ...keys.slice(0, i % keys.length)]) {
      const x = await variants[k](i)
      samples[k].push(x)
      log?.(`  [${i + 1}/${n}] ${k}: ${fmtNum(x)}`)
    }
  }
  return Object.fromEntries(keys.map((k) => [k, summarize(samples[k])])) as Record<K, Stat>
}

export const fmtNum = (x: number): string =>
  !Number.isFinite(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)

export const fmtStat = (st: Stat): string =>
  st.n === 0 ? "-" : st.n === 1 ? fmtNum(st.median) : `${fmtNum(st.median)} (${fmtNum(st.min)}–${fmtNum(st.max)})`
