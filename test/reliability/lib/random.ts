// A seeded PRNG (mulberry32) so a failing crash loop can be replayed with RELIABILITY_SEED=<seed>.
import { randomBytes } from "node:crypto"

export interface Rng {
  readonly seed: number
  /** [0, 1) */
  readonly next: () => number
  /** integer in [lo, hi] */
  readonly int: (lo: number, hi: number) => number
  readonly pick: <A>(xs: ReadonlyArray<A>) => A
  readonly chance: (p: number) => boolean
  /** Pseudo-random bytes (fast, deterministic for the seed). */
  readonly bytes: (n: number) => Buffer
  readonly shuffle: <A>(xs: ReadonlyArray<A>) => Array<A>
}

export const makeRng = (seed: number = Number(process.env["RELIABILITY_SEED"] ?? randomBytes(4).readUInt32BE(0))): Rng => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1))
  return {
    seed,
    next,
    int,
    pick: (xs) => {
      if (xs.length === 0) throw new Error("pick from an empty list")
      return xs[int(0, xs.length - 1)]!
    },
    chance: (p) => next() < p,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n)
      let i = 0
      for (; i + 4 <= n; i += 4) b.writeUInt32LE((next() * 4294967296) >>> 0, i)
      for (; i < n; i++) b[i] = int(0, 255)
      return b
    },
    shuffle: (xs) => {
      const out = [...xs]
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i)
        ;[out[i], out[j]] = [out[j]!, out[i]!]
      }
      return out
    }
  }
}
