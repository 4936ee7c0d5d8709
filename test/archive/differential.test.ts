// Differential property test of the layer reader against GNU tar (Debian's, what an operator reviews
// a layer with): random archives from a grammar of headers — entry types, PAX `x`/`g` records (with
// newline and `size=` tricks), GNU `L`/`K`, base-256 numbers, negative and fractional mtimes, sparse
// and unknown types — then damaged (truncation, bit flips, garbage) and compressed in good and bad
// ways (double and multi-member gzip, zstd, plain). For every case our reader either refuses with a
// LayerRefused, or yields exactly the entries `tar tv` lists (path, type, size, link target, mode,
// uid/gid, mtime) while GNU tar succeeds. Anything else thrown fails the test.
// A few seconds by default, on a fixed seed so that CI is deterministic; FUZZ_RUNS=5000 for a long run on
// a random seed, FUZZ_SEED to replay one.
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { spawnSync } from "node:child_process"
import { gunzip } from "../../src/archive/Gzip.js"
import type { TarEntry } from "../../src/archive/TarEntry.js"
import { TarParser } from "../../src/archive/TarParser.js"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import { eof, gnuLong, gz, header, type HeaderSpec, pad, pax, paxRecord } from "../support/tar.js"

const RUNS = Number(process.env["FUZZ_RUNS"] ?? 150)
const SEED = process.env["FUZZ_SEED"] !== undefined ? Number(process.env["FUZZ_SEED"]) : process.env["FUZZ_RUNS"] === undefined ? 20261203 : undefined

// ---- the grammar ----------------------------------------------------------------------------

const segment = fc.constantFrom("a", "b", "c", "dir", "e-f", "g.h", "x".repeat(60), ".")
const shortName = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join("/"))
const longName = fc.array(segment, { minLength: 3, maxLength: 8 }).map((s) => s.join("/") + "/" + "n".repeat(90))
const name = fc.oneof({ weight: 4, arbitrary: shortName }, { weight: 1, arbitrary: longName })

const type = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom("0", "0", "0", "5", "5", "2", "1", "3", "4", "6", "7", "\0") },
  { weight: 1, arbitrary: fc.constantFrom("S", "D", "V", "Z", "x", "L") }
)

/** Where a name goes: the header, the ustar prefix, GNU L/K, PAX, or both (agreeing or not). */
const via = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom("header", "header", "prefix", "gnu", "pax", "both") },
  { weight: 1, arbitrary: fc.constant("disagree") }
)

const extraPax = fc.oneof(
  fc.constant<[string, string]>(["comment", "hello"]),
  fc.constantFrom<[string, string]>(["comment", "x\n13 path=evil\n"], ["comment", "y\n11 size=0\n"]),
  fc.constant<[string, string]>(["SCHILY.xattr.user.k", "v"]),
  fc.tuple(fc.constantFrom("uid", "gid"), fc.integer({ min: 0, max: 5_000_000_000 })).map(([k, v]): [string, string] => [k, String(v)]),
  fc.constantFrom<[string, string]>(["mtime", "-12.25"], ["mtime", "1700000000.5"], ["mtime", "-86400"], ["atime", "5"], ["mtime", "1.2.3"]),
  fc.constantFrom<[string, string]>(["uname", "someone"], ["gname", "grp"], ["uname", ""], ["ctime", "3"])
)

const entry = fc.record({
  type,
  name,
  nameVia: via,
  link: name,
  linkVia: via,
  size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1500 })),
  /** Non-files get no data, mostly. */
  dataOnNonFile: fc.oneof({ weight: 1, arbitrary: fc.constant(true) }, { weight: 30, arbitrary: fc.constant(false) }),
  /** PAX size: none, the real size, or a different one (the data follows the header's size then). */
  paxSize: fc.constantFrom("none", "none", "none", "none", "same", "other"),
  mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o1777, 0o100644, 0o7777),
  uid: fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 0, max: 65535 }) }, { weight: 1, arbitrary: fc.constantFrom(3_000_000, 2 ** 40) }),
  gid: fc.integer({ min: 0, max: 65535 }),
  mtime: fc.oneof(
    { weight: 30, arbitrary: fc.integer({ min: 0, max: 2_000_000_000 }) },
    { weight: 8, arbitrary: fc.integer({ min: -3_000_000_000, max: -1 }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 54, -(2 ** 54)) },
    { weight: 1, arbitrary: fc.constant(2 ** 53 - 1) }
  ),
  base256: fc.subarray(["uid", "gid", "size", "mtime"] as const),
  format: fc.constantFrom("ustar", "ustar", "gnu"),
  extra: fc.oneof({ weight: 8, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(extraPax, { maxLength: 2 }) }),
  trailingSlash: fc.boolean()
})

const item = fc.oneof(
  { weight: 12, arbitrary: entry.map((e) => ({ t: "entry" as const, e })) },
  { weight: 1, arbitrary: fc.array(extraPax, { minLength: 1, maxLength: 2 }).map((records) => ({ t: "global" as const, records })) }
)

const damage = fc.oneof(
  { weight: 14, arbitrary: fc.constant({ k: "none" as const }) },
  { weight: 1, arbitrary: fc.nat().map((at) => ({ k: "truncate" as const, at })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })).map(([at, bit]) => ({ k: "flip" as const, at, bit })) },
  // a header field changed and its checksum fixed: field-level readings, not only checksums, compared
  { weight: 3, arbitrary: fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]) => ({ k: "poke" as const, at, byte })) },
  { weight: 1, arbitrary: fc.constantFrom("lone-zero-block" as const, "garbage-after-eof" as const, "no-eof" as const).map((k) => ({ k })) }
)

const compression = fc.oneof(
  { weight: 14, arbitrary: fc.constant("gzip") },
  { weight: 2, arbitrary: fc.constant("gzip+zeros") },
  { weight: 1, arbitrary: fc.constantFrom("gzip2", "multi", "zstd", "plain", "gzip+garbage", "zstd-inside") }
)

const archive = fc.record({ items: fc.array(item, { maxLength: 6 }), damage, compression })

type Entry = typeof entry extends fc.Arbitrary<infer A> ? A : never

// ---- building bytes ---------------------------------------------------------------------------

const content = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => 97 + (i % 26)))

const entryBytes = (e: Entry): Buffer => {
  const parts: Array<Buffer> = []
  const path = e.type === "5" && e.trailingSlash ? `${e.name}/` : e.name
  const records: Array<[string, string]> = [...e.extra]
  const h: HeaderSpec & { name: string } = {
    name: path.slice(-99),
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
    format: e.format as "ustar" | "gnu",
    base256: e.base256,
    size: e.type === "0" || e.type === "7" || e.type === "\0" || e.dataOnNonFile ? e.size : 0
  }
  const putName = (how: string, value: string, field: "path" | "linkpath") => {
    if (how === "gnu" || how === "both" || how === "disagree") parts.push(gnuLong(field === "path" ? "L" : "K", value))
    if (how === "pax" || how === "both") records.push([field, value])
    if (how === "disagree") records.push([field, value + "-other"])
  }
  putName(e.nameVia, path, "path")
  if (e.nameVia === "prefix" && path.includes("/")) {
    const cut = path.lastIndexOf("/")
    Object.assign(h, { prefix: path.slice(0, cut).slice(0, 154), name: path.slice(cut + 1).slice(0, 99) })
  }
  if (e.type === "1" || e.type === "2") {
    putName(e.linkVia, e.link, "linkpath")
    Object.assign(h, { linkname: e.link.slice(0, 99) })
  }
  const dataSize = Number(h.size)
  if (e.paxSize === "same") records.push(["size", String(dataSize)])
  if (e.paxSize === "other") records.push(["size", String(dataSize + 7)])
  if (records.length > 0) parts.push(pax(Buffer.concat(records.map(([k, v]) => paxRecord(k, v)))))
  parts.push(header(h), pad(content(dataSize)))
  return Buffer.concat(parts)
}

const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x49, 0x00, 0x00])

const build = (a: typeof archive extends fc.Arbitrary<infer A> ? A : never): Buffer => {
  const parts = a.items.map((it) =>
    it.t === "entry" ? entryBytes(it.e) : pax(Buffer.concat(it.records.map(([k, v]) => paxRecord(k, v))), "g")
  )
  let t = Buffer.concat(parts)
  const d = a.damage
  if (d.k === "lone-zero-block") t = Buffer.concat([t, Buffer.alloc(512), entryBytes(loneEntry), eof()])
  else if (d.k === "garbage-after-eof") t = Buffer.concat([t, eof(), Buffer.from("garbage")])
  else if (d.k !== "no-eof") t = Buffer.concat([t, eof()])
  if (d.k === "truncate" && t.length > 0) t = t.subarray(0, d.at % t.length)
  if (d.k === "flip" && t.length > 0) {
    t = Buffer.from(t)
    t[d.at % t.length]! ^= 1 << d.bit
  }
  if (d.k === "poke" && t.length >= 512) {
    t = Buffer.from(t)
    const block = Math.floor((d.at % t.length) / 512) * 512
    t[block + ((d.at >> 9) % 512)] = d.byte
    t.fill(0x20, block + 148, block + 156)
    let sum = 0
    for (let i = block; i < block + 512; i++) sum += t[i]!
    t.write(sum.toString(8).padStart(6, "0") + "\0 ", block + 148, "latin1")
  }
  switch (a.compression) {
    case "gzip":
      return gz(t)
    case "gzip2":
      return gz(gz(t))
    case "multi":
      return Buffer.concat([gz(t.subarray(0, t.length >> 1)), gz(t.subarray(t.length >> 1))])
    case "zstd":
      return Buffer.concat([ZSTD, t])
    case "plain":
      return t
    case "gzip+garbage":
      return Buffer.concat([gz(t), Buffer.from("junk")])
    case "gzip+zeros":
      return Buffer.concat([gz(t), Buffer.alloc(1000)])
    case "zstd-inside":
      return gz(Buffer.concat([ZSTD, t]))
  }
  return t
}

const loneEntry: Entry = {
  type: "0", name: "after-lone-zero", nameVia: "header", link: "", linkVia: "header", size: 3, paxSize: "none", mode: 0o644,
  uid: 1, gid: 1, mtime: 5, base256: [], format: "ustar", extra: [], trailingSlash: false, dataOnNonFile: false
}

// ---- the two readings -------------------------------------------------------------------------

async function* once(b: Buffer) {
  yield b
}

/** Our reading: the entries, or the refusal's message. Anything else thrown propagates (a test failure). */
const ours = async (bytes: Buffer): Promise<Array<TarEntry> | string> => {
  const entries: Array<TarEntry> = []
  const parser = new TarParser({ entry: (e) => void entries.push(e), data: () => {}, entryEnd: () => {} }, "fuzz")
  try {
    await gunzip(once(bytes), "fuzz", (c) => parser.write(c))
    parser.end()
    return entries
  } catch (e) {
    if (e instanceof LayerRefused) return e.message
    throw e
  }
}

const TYPE_CHAR: Record<TarEntry["kind"], string> = { file: "-", dir: "d", symlink: "l", hardlink: "h", chardev: "c", blockdev: "b", fifo: "p" }

const modeString = (kind: TarEntry["kind"], m: number): string => {
  const rwx = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? "x" : "-")
  return TYPE_CHAR[kind] + rwx(m >> 6, (m & 0o4000) !== 0, "s") + rwx(m >> 3, (m & 0o2000) !== 0, "s") + rwx(m, (m & 0o1000) !== 0, "t")
}

/**
 * `tar tv --full-time --utc` of an mtime. GNU tar sets a negative fractional time right on
 * extraction (-12.25 → 23:59:47.75) but lists it with the fraction counted the other way
 * (23:59:48.25): the display rule is reproduced, not "fixed".
 */
const timeString = (t: number): string => {
  const whole = t < 0 ? Math.ceil(t) : Math.floor(t)
  const frac = Math.abs(t - whole)
  const d = new Date(whole * 1000).toISOString().replace("T", " ").slice(0, 19)
  return frac === 0 ? d : d + String(frac.toFixed(9)).slice(1).replace(/0+$/, "")
}

/** GNU tar's default quoting of names in listings (`escape`, C locale): C escapes, other bytes as \\ooo. */
const NAMED: Record<number, string> = { 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 92: "\\\\" }
const gnuEscape = (name: string): string =>
  [...Buffer.from(name)].map((c) => NAMED[c] ?? (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\${c.toString(8).padStart(3, "0")}`)).join("")

const listLine = (e: TarEntry): string => {
  const tail = e.kind === "symlink" ? ` -> ${gnuEscape(e.linkpath)}` : e.kind === "hardlink" ? ` link to ${gnuEscape(e.linkpath)}` : ""
  const size = e.kind === "chardev" || e.kind === "blockdev" ? "0,0" : String(e.size)
  return `${modeString(e.kind, e.mode)} ${e.uid}/${e.gid} ${size} ${timeString(e.mtime)} ${gnuEscape(e.path)}${tail}`
}

/** GNU tar's listing, spaces normalised, or undefined when it fails (exit status not 0). */
const gnu = (bytes: Buffer): { ok: boolean; lines: Array<string>; stderr: string } => {
  const r = spawnSync("tar", ["--list", "--verbose", "--numeric-owner", "--full-time", "--utc", "-z", "-f", "-"], {
    input: bytes,
    env: { LC_ALL: "C", TZ: "UTC", PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
    maxBuffer: 64 << 20
  })
  const lines = r.stdout.toString("latin1").split("\n").filter((l) => l !== "").map((l) => l.replace(/ +/g, " "))
  return { ok: r.status === 0, lines, stderr: r.stderr.toString("latin1") }
}

/** The check for one archive: a refusal, or GNU tar's exact listing. */
const agree = async (bytes: Buffer): Promise<void> => {
  const mine = await ours(bytes)
  if (typeof mine === "string") return
  const theirs = gnu(bytes)
  // GNU tar's warnings (a lone zero block at the end, unknown PAX keywords) are not failures.
  // GNU lists a contiguous file (type 7) as `C`, and extracts it as a regular file.
  const show = (ok: boolean, lines: ReadonlyArray<string>) => [ok ? "accepted" : "failed", ...lines.map((l) => l.replace(/^C/, "-"))].join("\n")
  const [a, b] = [show(true, mine.map((e) => listLine(e).replace(/ +/g, " "))), show(theirs.ok, theirs.lines)]
  if (a !== b) throw new Error(`ours:\n${a}\nGNU tar:\n${b}\n${theirs.stderr}`)
}

describe("differential: the reader against GNU tar", () => {
  it("either refuses or lists exactly what GNU tar lists", { timeout: Math.max(60_000, RUNS * 500) }, async () => {
    let refused = 0
    const reasons = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(archive, async (a) => {
        const bytes = build(a)
        const r = await ours(bytes)
        if (typeof r === "string") {
          refused++
          if (process.env["FUZZ_STATS"]) reasons.set(r.replace(/"[^"]*"/g, "…").replace(/[0-9]+/g, "N"), (reasons.get(r.replace(/"[^"]*"/g, "…").replace(/[0-9]+/g, "N")) ?? 0) + 1)
        }
        await agree(bytes)
      }),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) }
    )
    if (process.env["FUZZ_STATS"]) console.log(refused, RUNS, [...reasons].sort((a, b) => b[1] - a[1]))
    // The grammar must reach both outcomes, or the test proves nothing.
    expect(refused).toBeGreaterThan(RUNS / 10)
    expect(refused).toBeLessThan(RUNS)
  })
})
