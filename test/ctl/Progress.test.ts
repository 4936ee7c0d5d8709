import { describe, expect, it } from "vitest"
import { formatBytes, formatDuration, formatProgress, formatRate, makeProgressBar } from "../../src/ctl/Progress.js"

const MiB = 1024 * 1024

describe("Progress formatting", () => {
  it("bytes, rates and durations", () => {
    expect(formatBytes(0)).toBe("0 B")
    expect(formatBytes(1536)).toBe("1.5 KiB")
    expect(formatBytes(256 * MiB)).toBe("256.0 MiB")
    expect(formatBytes(2 * 1024 * MiB)).toBe("2.00 GiB")
    expect(formatRate(300 * MiB)).toBe("300.0 MiB/s")
    expect(formatRate(0)).toBe("-- /s")
    expect(formatRate(NaN)).toBe("-- /s")
    expect(formatDuration(3)).toBe("0:03")
    expect(formatDuration(62)).toBe("1:02")
    expect(formatDuration(3723)).toBe("1:02:03")
    expect(formatDuration(Infinity)).toBe("--:--")
  })

  it("a line with percentage, bar, sizes, rate and time left", () => {
    const line = formatProgress({ done: 64 * MiB, total: 256 * MiB, elapsedMs: 1000 }, 100)
    expect(line).toMatch(/^ 25% \[#+-+\] 64\.0 MiB \/ 256\.0 MiB {2}64\.0 MiB\/s {2}0:03 left$/)
    expect(line.length).toBeLessThan(100)
    const bar = /\[(#*)(-*)\]/.exec(line)!
    const width = bar[1]!.length + bar[2]!.length
    expect(Math.abs(bar[1]!.length - width / 4)).toBeLessThanOrEqual(1) // a quarter filled
  })

  it("finished: 100% and elapsed time instead of time left; zero-byte files", () => {
    expect(formatProgress({ done: 10 * MiB, total: 10 * MiB, elapsedMs: 2000 }, 100)).toMatch(/^100% \[#+\] .* {2}0:02$/)
    expect(formatProgress({ done: 0, total: 0, elapsedMs: 0 }, 100)).toMatch(/^100% /)
  })

  it("narrow terminals drop the bar, never exceed the width", () => {
    for (const cols of [20, 40, 60]) {
      const line = formatProgress({ done: 5 * MiB, total: 256 * MiB, elapsedMs: 500 }, cols)
      expect(line.length).toBeLessThanOrEqual(cols - 1)
    }
    expect(formatProgress({ done: 5 * MiB, total: 256 * MiB, elapsedMs: 500 }, 40)).not.toContain("[")
  })
})

describe("makeProgressBar", () => {
  const fakeTerm = (isTTY: boolean) => {
    const out: Array<string> = []
    return { out, term: { isTTY, columns: 80, write: (s: string) => out.push(s) } }
  }

  it("off a TTY writes nothing at all", () => {
    const { out, term } = fakeTerm(false)
    const bar = makeProgressBar(100, term)
    bar.update(50)
    bar.finish()
    bar.clear()
    expect(out).toEqual([])
  })

  it("on a TTY redraws in place, throttled, and ends the line", () => {
    const { out, term } = fakeTerm(true)
    let t = 0
    const bar = makeProgressBar(100 * MiB, term, () => t, 100)
    bar.update(1 * MiB) // drawn
    t = 50
    bar.update(2 * MiB) // throttled
    t = 200
    bar.update(50 * MiB) // drawn
    t = 250
    bar.update(100 * MiB) // throttled, but finish() draws the last state
    bar.finish()
    expect(out.filter((s) => s.startsWith("\r"))).toHaveLength(3)
    expect(out[1]).toContain(" 50%")
    expect(out.at(-2)).toContain("100.0 MiB / 100.0 MiB")
    expect(out.at(-1)).toBe("\n")
  })
})
