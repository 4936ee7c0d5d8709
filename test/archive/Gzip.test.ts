import { describe, expect, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import { deflateRawSync, gzipSync } from "node:zlib"
import { gunzip, gzipHeaderLength } from "../../src/archive/Gzip.js"
import { gunzipInline, inlineInflateAvailable } from "../../src/archive/GzipInline.js"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import { corrupt, file, tar } from "../support/tar.js"

async function* chunked(b: Buffer, step: number) {
  for (let i = 0; i < b.length; i += step) yield b.subarray(i, i + step)
}

const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251))

// Every test runs against each implementation: the zlib stream one, and the inline one with its default
// output buffer and with small ones (output full exactly at the end of the deflate data included).
const implementations: ReadonlyArray<readonly [string, typeof gunzip]> = [
  ["gunzip", gunzip],
  ["gunzipInline", (s, l, d) => gunzipInline(s, l, d)],
  ["gunzipInline, 1000-byte output", (s, l, d) => gunzipInline(s, l, d, 1000)],
  ["gunzipInline, output of the payload's size", (s, l, d) => gunzipInline(s, l, d, payload.length)]
]

describe.each(implementations)("%s", (_name, gunzip) => {
/** Inflates `b` fed in chunks of `step`: the bytes, or the refusal's message. */
const inflate = async (b: Buffer, step = 1 << 20): Promise<Buffer | string> => {
  const out: Array<Buffer> = []
  try {
    const stats = await gunzip(chunked(b, step), "l", (c) => void out.push(Buffer.from(c)))
    const all = Buffer.concat(out)
    expect(stats).toEqual({ compressed: b.length, inflated: all.length })
    return all
  } catch (e) {
    if (e instanceof LayerRefused) return e.message
    throw e
  }
}

/** Buffers compared with equals(): vitest's toEqual on hundreds of KiB takes seconds. The refusal shows when it is one. */
const same = (got: Buffer | string, want: Buffer) => (Buffer.isBuffer(got) ? got.equals(want) : got)

describe("gunzip", () => {
  it("inflates one member whatever the chunking, zero padding after it included", async () => {
    const z = gzipSync(payload)
    for (const step of [65536]) expect(same(await inflate(z, step), payload), `step ${step}`).toBe(true)
    const small = gzipSync(payload.subarray(0, 40))
    for (const step of [3, 10, 11]) expect(same(await inflate(small, step), payload.subarray(0, 40)), `step ${step}`).toBe(true)
    expect(same(await inflate(Buffer.concat([z, Buffer.alloc(4096)]), 1000), payload)).toBe(true)
    expect(same(await inflate(gzipSync(Buffer.alloc(0))), Buffer.alloc(0))).toBe(true)
  })

  it("reads the optional header fields (extra, name, comment, header CRC)", async () => {
    const raw = deflateRawSync(payload)
    const trailer = Buffer.alloc(8)
    trailer.writeUInt32LE((await import("node:zlib")).crc32(payload), 0)
    trailer.writeUInt32LE(payload.length, 4)
    const head = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 0, 0, 0, 0, 0, 3, 3, 0]), Buffer.from("abc"), Buffer.from("name\0comment\0")])
    const hcrc = Buffer.alloc(2)
    hcrc.writeUInt16LE((await import("node:zlib")).crc32(head) & 0xffff)
    expect(gzipHeaderLength(Buffer.concat([head, hcrc]))).toBe(head.length + 2)
    expect(same(await inflate(Buffer.concat([head, hcrc, raw, trailer]), 4001), payload)).toBe(true)
    hcrc[0] ^= 1
    expect(await inflate(Buffer.concat([head, hcrc, raw, trailer]))).toBe("layer l: gzip header checksum mismatch")
  })

  it("refuses what is not gzip, naming zstd and plain tar", async () => {
    expect(await inflate(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]))).toBe("layer l: zstd-compressed; only gzip is accepted")
    expect(await inflate(tar(file("a")))).toBe("layer l: an uncompressed tar; only gzip is accepted")
    expect(await inflate(Buffer.from("hello"))).toBe("layer l: not gzip (no gzip header)")
    expect(await inflate(Buffer.alloc(0))).toBe("layer l: empty file, not gzip")
    expect(await inflate(Buffer.from([0x1f, 0x8b, 8, 0]))).toBe("layer l: truncated gzip header")
    expect(await inflate(Buffer.from([0x1f, 0x8b, 9, 0, 0, 0, 0, 0, 0, 3]))).toBe("layer l: unknown gzip compression method")
    expect(await inflate(Buffer.from([0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 3]))).toBe("layer l: reserved gzip header flags set")
  })

  it("gives every refusal the same words however the file is cut into chunks", async () => {
    // Stored blocks: the deflate data is as long as the payload. Longer than the 1000-byte output (so it fills
    // mid-stream) and no longer: a byte at a time through zlib's stream costs ~1 ms per KiB.
    const small = randomBytes(1500)
    const z = gzipSync(small)
    const cases: ReadonlyArray<Buffer> = [
      Buffer.concat([z, gzipSync(Buffer.from("more"))]),
      Buffer.concat([z, Buffer.from([0x1f])]),
      Buffer.concat([z, Buffer.from([0, 0, 0x1f, 0x8b])]),
      Buffer.concat([z, Buffer.from([0x1f, 0])]),
      Buffer.concat([z, Buffer.from("x")]),
      z.subarray(0, z.length - 3),
      z.subarray(0, z.length - 9),
      z.subarray(0, 7),
      corrupt(z, z.length - 8),
      corrupt(z, z.length - 2),
      corrupt(z, 10),
      corrupt(z, 3)
    ]
    for (const [i, b] of cases.entries()) {
      const whole = await inflate(b)
      expect(typeof whole, `case ${i}`).toBe("string")
      for (const step of [1, 2, 3, 5, 8, 13, 1000]) expect(await inflate(b, step), `case ${i}, chunks of ${step}`).toBe(whole)
    }
  })

  it("refuses a second member, garbage after the member, truncation and corruption", async () => {
    const z = gzipSync(payload)
    expect(await inflate(Buffer.concat([z, gzipSync(Buffer.from("more"))]), 4096)).toBe("layer l: a second gzip member after the first")
    expect(await inflate(Buffer.concat([z, Buffer.alloc(100), Buffer.from("x")]), 33)).toBe("layer l: data after the gzip stream")
    expect(await inflate(z.subarray(0, z.length - 3))).toBe("layer l: truncated gzip data (no trailer)")
    expect(await inflate(z.subarray(0, z.length - 20))).toBe("layer l: truncated gzip data (unexpected end of file)")
    const crc = Buffer.from(z)
    crc[crc.length - 8] ^= 1
    expect(await inflate(crc)).toBe("layer l: corrupt gzip data (CRC mismatch)")
    const len = Buffer.from(z)
    len[len.length - 1] ^= 1
    expect(await inflate(len)).toBe("layer l: corrupt gzip data (length mismatch)")
    expect(await inflate(corrupt(z, 20))).toMatch(/^layer l: corrupt gzip data/)
  })

  it("passes the consumer's failure through and stops reading", async () => {
    const big = gzipSync(randomBytes(4 << 20))
    let reads = 0
    async function* counted() {
      for (let i = 0; i < big.length; i += 4096) {
        reads++
        yield big.subarray(i, i + 4096)
      }
    }
    await expect(
      gunzip(counted(), "l", () => {
        throw new Error("consumer says no")
      })
    ).rejects.toThrow("consumer says no")
    expect(reads).toBeLessThan(big.length / 4096 / 4)
  })
})

/**
 * The harshest source the contract allows: one buffer, overwritten with the next chunk (and 0xaa
 * beyond it) as soon as the next chunk is asked for. A gunzip that kept a chunk without copying it
 * (the trailer, when the deflate data ends inside it) would read the scribbled bytes.
 */
async function* reusing(b: Buffer, step: number) {
  const buf = Buffer.alloc(step)
  for (let i = 0; i < b.length; i += step) {
    buf.fill(0xaa)
    const n = b.copy(buf, 0, i, i + step)
    yield buf.subarray(0, n)
  }
  buf.fill(0xaa)
}

const inflateReusing = async (b: Buffer, step: number): Promise<Buffer | string> => {
  const out: Array<Buffer> = []
  try {
    await gunzip(reusing(b, step), "l", (c) => void out.push(Buffer.from(c)))
    return Buffer.concat(out)
  } catch (e) {
    if (e instanceof LayerRefused) return e.message
    throw e
  }
}

describe("gunzip over a source that reuses its buffer", () => {
  const z = gzipSync(payload)
  const end = z.length - 8 // where the deflate data ends and the trailer starts
  const cases: ReadonlyArray<readonly [string, Buffer]> = [
    ["one member", z],
    ["zero padding", Buffer.concat([z, Buffer.alloc(5000)])],
    ["a second member", Buffer.concat([z, gzipSync(Buffer.from("more"))])],
    ["data after the member", Buffer.concat([z, Buffer.alloc(300), Buffer.from("x")])],
    ["truncated trailer", z.subarray(0, z.length - 3)],
    ["truncated deflate data", z.subarray(0, z.length - 20)]
  ]
  // Chunk ends at the deflate end, inside the trailer, at its end, and elsewhere.
  const steps = [end, end - 1, end + 1, end + 4, z.length, Math.ceil(end / 2), Math.ceil((end + 3) / 3), 4096, 65536]

  for (const [name, bytes] of cases) {
    it(`${name}: the same bytes or the same refusal as a source of fresh buffers, whatever the cut`, async () => {
      for (const step of steps) {
        const want = await inflate(bytes, step)
        const got = await inflateReusing(bytes, step)
        expect(typeof want === "string" ? got : same(got, want), `step ${step}`).toBe(typeof want === "string" ? want : true)
      }
    })
  }
})
})

it("the inline inflater is available on this Node (else the checks fall back to the slower stream)", () => {
  expect(inlineInflateAvailable).toBe(true)
})
