// Go-style flags for the bench scripts (`-name x`, `-name=x`, `--name x`, bare `-bool`), and durations/sizes.

export interface Flags {
  readonly str: (name: string, dflt: string) => string
  readonly int: (name: string, dflt: number) => number
  readonly bool: (name: string) => boolean
  /** `60s`, `10m`, `500ms`, `1h`; returns milliseconds. */
  readonly duration: (name: string, dflt: string) => number
  /** `256M`, `1G`, `4096`, `64k`; returns bytes (binary units). */
  readonly size: (name: string, dflt: string) => number
}

export const parseDuration = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim())
  if (!m) throw new UsageError(`bad duration ${JSON.stringify(s)} (use e.g. 500ms, 60s, 10m)`)
  const n = Number(m[1])
  const unit = m[2] ?? "s"
  return n * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000)
}

export const parseSize = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgKMG])?(?:i?[bB])?$/.exec(s.trim())
  if (!m) throw new UsageError(`bad size ${JSON.stringify(s)} (use e.g. 64M, 1G)`)
  const mult = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? "").toLowerCase() as "k" | "m" | "g"] ?? 1
  return Math.round(Number(m[1]) * mult)
}

export class UsageError extends Error {}

export const parseFlags = (argv: ReadonlyArray<string>, known: ReadonlyArray<string>, booleans: ReadonlyArray<string> = []): Flags => {
  const values = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const m = /^--?([A-Za-z0-9][\w-]*)(?:=(.*))?$/.exec(a)
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`)
    const name = m[1]!
    if (!known.includes(name) && !booleans.includes(name)) {
      throw new UsageError(`unknown flag -${name} (known: ${[...known, ...booleans].map((k) => `-${k}`).join(" ")})`)
    }
    if (booleans.includes(name)) {
      values.set(name, m[2] ?? "true")
    } else if (m[2] !== undefined) {
      values.set(name, m[2])
    } else {
      const v = argv[++i]
      if (v === undefined) throw new UsageError(`flag -${name} needs a value`)
      values.set(name, v)
    }
  }
  return {
    str: (n, d) => values.get(n) ?? d,
    int: (n, d) => {
      const v = values.get(n)
      if (v === undefined) return d
      const x = Number(v)
      if (!Number.isInteger(x)) throw new UsageError(`-${n} wants an integer, got ${JSON.stringify(v)}`)
      return x
    },
    bool: (n) => ["true", "1", "yes"].includes(values.get(n) ?? "false"),
    duration: (n, d) => parseDuration(values.get(n) ?? d),
    size: (n, d) => parseSize(values.get(n) ?? d)
  }
}
