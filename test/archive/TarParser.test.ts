import { describe, expect, it } from "@effect/vitest"
import { LayerRefused } from "../../src/domain/ArchiveErrors.js"
import type { TarEntry } from "../../src/archive/TarEntry.js"
import { TarParser } from "../../src/archive/TarParser.js"
import { dir, eof, file, gnuLong, hardlink, header, pax, paxRecord, symlink, tar } from "../support/tar.js"

interface Listed {
  readonly entries: Array<TarEntry & { readonly content: string }>
}

/**
 * Parses `bytes` fed in chunks of `step`: the entries with their content, or the refusal's message. Without a
 * step, whole, and then cut at 1, 7, 511 and 513 bytes, which must give the same (one reading, one verdict,
 * the same words, wherever the input was cut: every expectation below checks that too).
 */
const read = (bytes: Buffer, step?: number): Listed | string => {
  if (step !== undefined) return readIn(bytes, step)
  const whole = readIn(bytes, bytes.length || 1)
  if (bytes.length <= 256 * 1024) for (const s of [1, 7, 511, 513]) expect(readIn(bytes, s), `cut at ${s} bytes`).toEqual(whole)
  return whole
}
const readIn = (bytes: Buffer, step: number): Listed | string => {
  const entries: Array<TarEntry & { content: string }> = []
  let current: Array<Buffer> = []
  let open: TarEntry | undefined
  const p = new TarParser(
    {
      entry: (e) => {
        expect(open).toBeUndefined()
        open = e
        current = []
      },
      data: (c) => void current.push(Buffer.from(c)),
      entryEnd: () => {
        entries.push({ ...open!, content: Buffer.concat(current).toString() })
        open = undefined
      }
    },
    "code@v7"
  )
  try {
    for (let i = 0; i < bytes.length; i += step) p.write(bytes.subarray(i, i + step))
    p.end()
  } catch (e) {
    if (e instanceof LayerRefused) return e.message
    throw e
  }
  expect(open).toBeUndefined()
  return { entries }
}

const paths = (r: Listed | string) => (typeof r === "string" ? r : r.entries.map((e) => e.path))

describe("TarParser", () => {
  it("yields files, directories, links and devices with every field, whatever the chunking", () => {
    const bytes = tar(
      dir("d/", { mode: 0o2755, uid: 0, gid: 0, uname: "root", gname: "wheel", mtime: 1234 }),
      file("d/a", "hello", { mode: 0o4755 }),
      symlink("d/s", "../x"),
      hardlink("d/h", "d/a"),
      header({ name: "d/c", type: "3" }),
      header({ name: "d/b", type: "4" }),
      header({ name: "d/p", type: "6" }),
      file("d/big", "x".repeat(1500)),
      file("d/old", "v7", { type: "\0" }),
      file("d/contig", "c", { type: "7" })
    )
    const want = read(bytes)
    for (const step of [1, 7, 511, 512, 513, 4096]) expect(read(bytes, step)).toEqual(want)
    expect(want).toMatchObject({
      entries: [
        { path: "d/", kind: "dir", mode: 0o2755, uid: 0, gid: 0, uname: "root", gname: "wheel", mtime: 1234, atime: undefined, size: 0, linkpath: "" },
        { path: "d/a", kind: "file", mode: 0o4755, size: 5, content: "hello" },
        { path: "d/s", kind: "symlink", linkpath: "../x" },
        { path: "d/h", kind: "hardlink", linkpath: "d/a" },
        { path: "d/c", kind: "chardev" },
        { path: "d/b", kind: "blockdev" },
        { path: "d/p", kind: "fifo" },
        { path: "d/big", size: 1500 },
        { path: "d/old", kind: "file", content: "v7" },
        { path: "d/contig", kind: "file", content: "c" }
      ]
    })
  })

  it("joins the ustar prefix (POSIX headers only) and ignores it in GNU headers", () => {
    expect(paths(read(tar(file("name", "", { prefix: "pre/fix" }))))).toEqual(["pre/fix/name"])
    expect(paths(read(tar(file("name", "", { format: "gnu", patch: (b) => b.write("junk", 345) }))))).toEqual(["name"])
  })

  it("accepts an archive without end marker, and an empty one; refuses data after the end marker", () => {
    expect(paths(read(file("a", "x")))).toEqual(["a"])
    expect(read(Buffer.alloc(0))).toEqual({ entries: [] })
    expect(read(Buffer.alloc(10240))).toEqual({ entries: [] })
    expect(read(Buffer.concat([file("a"), Buffer.alloc(512), file("hidden")]))).toBe('layer code@v7: data after the end-of-archive marker')
    expect(read(Buffer.concat([tar(file("a")), Buffer.from("x")]))).toBe("layer code@v7: data after the end-of-archive marker")
  })

  it("refuses truncation anywhere", () => {
    const whole = tar(pax([["path", "long/name"]]), file("f", "x".repeat(600)))
    expect(read(whole.subarray(0, 100))).toBe("layer code@v7: truncated archive")
    expect(read(whole.subarray(0, 512 + 10))).toBe("layer code@v7: truncated archive")
    expect(read(whole.subarray(0, 1024))).toBe("layer code@v7: extended header without an entry (truncated archive)")
    expect(read(whole.subarray(0, 1536 + 100))).toBe('layer code@v7: refused entry "long/name": truncated archive')
    expect(read(whole.subarray(0, 1536 + 600))).toBe('layer code@v7: refused entry "long/name": truncated archive') // padding missing
  })

  it("checks the header checksum (unsigned or signed sum, as GNU tar)", () => {
    expect(read(tar(file("a", "", { checksumDelta: 1 })))).toBe("layer code@v7: not a tar archive")
    expect(read(tar(file("a"), file("b", "", { checksumDelta: -1 })))).toBe("layer code@v7: bad header checksum at offset 512")
    // a name byte >= 0x80: the signed sum differs from the unsigned one; both are accepted
    const name = "é"
    let signed = 0
    const h = header({ name })
    for (let i = 0; i < 512; i++) {
      const c = i >= 148 && i < 156 ? 32 : h[i]!
      signed += c > 127 ? c - 256 : c
    }
    const s = Buffer.from(h)
    s.write(signed.toString(8).padStart(6, "0") + "\0 ", 148, "latin1")
    expect(paths(read(tar(s)))).toEqual(["é"])
    expect(read(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]))).toBe("layer code@v7: not a tar archive (a gzip stream inside the gzip)")
    expect(read(tar(Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(510)])))).toBe(
      "layer code@v7: not a tar archive (a gzip stream inside the gzip)"
    )
  })

  it("refuses headers that are neither ustar nor GNU, names that are not UTF-8", () => {
    expect(read(tar(file("a", "", { format: "v7" })))).toBe("layer code@v7: not a ustar or GNU tar header")
    expect(read(tar(file("a", "", { patch: (b) => b.fill(0xff, 0, 1) })))).toBe("layer code@v7: name is not valid UTF-8")
  })

  describe("PAX", () => {
    it("walks records by their length, so a newline in a value cannot start a record", () => {
      expect(paths(read(tar(pax([["comment", "a=b c"], ["path", "visible"]]), file("short"))))).toEqual(["visible"])
      // node-tar split this on newlines and read path=evil; it is a newline in a value: refused
      const trick = Buffer.concat([paxRecord("comment", "x\n13 path=evil\n"), paxRecord("path", "visible")])
      expect(read(tar(pax(trick), file("short")))).toBe('layer code@v7: PAX comment holds a newline')
      expect(read(tar(pax([["path", "a\nb"]]), file("short")))).toBe("layer code@v7: PAX path holds a newline")
      expect(read(tar(pax(Buffer.from("11 size=5\n")), file("short")))).toBe("layer code@v7: malformed PAX record (length beyond the header)")
      expect(read(tar(pax(Buffer.from("10 size=5\n\n")), file("short")))).toBe("layer code@v7: malformed PAX record (length)")
      expect(read(tar(pax(Buffer.from("09 path=a\n")), file("short")))).toBe("layer code@v7: malformed PAX record (length)")
      expect(read(tar(pax(Buffer.from("10 patha_\n")), file("short")))).toBe("layer code@v7: malformed PAX record (no =)")
    })

    it("applies size, uid, gid, names, times and linkpath; negative and fractional times are kept", () => {
      const r = read(
        tar(
          pax([["uid", "70000000000"], ["gid", "5"], ["uname", "ü"], ["gname", "g"], ["mtime", "-12.25"], ["atime", "7"], ["size", "3"]]),
          file("f", "abc", { size: 999 }),
          pax([["linkpath", "x".repeat(300)]]),
          symlink("s", "short")
        )
      )
      expect(r).toBe('layer code@v7: refused entry "f": PAX uid is out of range')
      const ok = read(
        tar(
          pax([["uid", "4000000000"], ["gid", "5"], ["uname", "ü"], ["gname", "g"], ["mtime", "-12.25"], ["atime", "7"], ["size", "3"]]),
          header({ name: "f", size: 999 }),
          Buffer.from("abc".padEnd(512, "\0")),
          pax([["linkpath", "x".repeat(300)]]),
          symlink("s", "short")
        )
      )
      expect(ok).toMatchObject({
        entries: [
          { path: "f", uid: 4000000000, gid: 5, uname: "ü", gname: "g", mtime: -12.25, atime: 7, size: 3, content: "abc" },
          { path: "s", linkpath: "x".repeat(300) }
        ]
      })
    })

    it("refuses the same key twice, empty values, a NUL, two PAX headers for one entry, a PAX header without entry", () => {
      expect(read(tar(pax([["path", "a"], ["path", "b"]]), file("f")))).toBe("layer code@v7: PAX path given twice")
      expect(read(tar(pax([["uid", ""]]), file("f")))).toBe("layer code@v7: PAX uid is empty")
      expect(read(tar(pax([["path", "a\0b"]]), file("f")))).toBe("layer code@v7: PAX path holds a NUL byte")
      expect(read(tar(pax([["path", "a"]]), pax([["uid", "1"]]), file("f")))).toBe("layer code@v7: two PAX headers for one entry")
      expect(read(tar(pax([["path", "a"]])))).toBe("layer code@v7: extended header without an entry")
      expect(read(tar(pax([["size", "1e3"]]), file("f")))).toBe('layer code@v7: refused entry "f": PAX size is not a decimal number')
      expect(read(tar(pax([["mtime", "1.1234567891"]]), file("f")))).toBe('layer code@v7: refused entry "f": PAX mtime is not a time')
    })

    it("ignores keys nobody applies (comment, xattrs, ctime) but refuses sparse files", () => {
      expect(paths(read(tar(pax([["comment", "hi"], ["SCHILY.xattr.user.a", "v"], ["ctime", "junk"]]), file("f"))))).toEqual(["f"])
      expect(read(tar(pax([["GNU.sparse.size", "10"]]), file("f")))).toBe("layer code@v7: GNU sparse files are not supported")
    })

    it("refuses a global header that would change entries; accepts one with only a comment (git archive)", () => {
      for (const key of ["path", "uid", "gid", "mtime", "uname", "gname", "linkpath", "size", "atime"]) {
        expect(read(tar(pax([[key, "1"]], "g"), file("f")))).toBe(
          `layer code@v7: a global PAX header sets ${key}, which would change the entries after it`
        )
      }
      expect(paths(read(tar(pax([["comment", "0123abcd"]], "g"), file("f"))))).toEqual(["f"])
    })

    it("bounds PAX headers at 1 MiB, before reading them", () => {
      expect(read(header({ type: "x", size: 2 ** 40 }))).toBe("layer code@v7: PAX header of 1099511627776 bytes (at most 1048576)")
    })
  })

  describe("GNU long names", () => {
    it("applies L and K", () => {
      const long = "d/".repeat(100) + "f"
      expect(read(tar(gnuLong("L", long), gnuLong("K", "t".repeat(200)), symlink("short", "x")))).toMatchObject({
        entries: [{ path: long, linkpath: "t".repeat(200) }]
      })
    })

    it("refuses an L name and a PAX path that disagree (K and linkpath likewise); accepts them agreeing", () => {
      expect(read(tar(gnuLong("L", "gnu-name"), pax([["path", "pax-name"]]), file("f")))).toBe(
        'layer code@v7: refused entry "pax-name": GNU long name "gnu-name" and PAX path disagree'
      )
      expect(paths(read(tar(gnuLong("L", "same"), pax([["path", "same"]]), file("f"))))).toEqual(["same"])
      expect(read(tar(gnuLong("K", "a"), pax([["linkpath", "b"]]), symlink("s", "c")))).toBe(
        'layer code@v7: refused entry "s": GNU long link name and PAX linkpath disagree'
      )
      expect(read(tar(gnuLong("L", "a"), gnuLong("L", "b"), file("f")))).toBe("layer code@v7: two GNU long names for one entry")
    })

    it("bounds L and K at PATH_MAX before reading them", () => {
      expect(read(header({ type: "L", size: 10 ** 9 }))).toBe("layer code@v7: GNU long name of 1000000000 bytes (at most 4097)")
    })
  })

  describe("numbers", () => {
    it("reads base-256, negative mtimes included; refuses beyond 2^53 and negative ids or sizes", () => {
      const r = read(tar(file("f", "ab", { base256: ["uid", "gid", "size", "mtime"], uid: 3_000_000, gid: 7, mtime: -86400 })))
      expect(r).toMatchObject({ entries: [{ uid: 3_000_000, gid: 7, mtime: -86400, size: 2, content: "ab" }] })
      expect(read(tar(file("f", "", { mtime: 2n ** 60n })))).toBe('layer code@v7: refused entry "f": mtime is beyond 2^53')
      // found by the differential test: 2^53 - 1 seconds is no Date, and no file system holds it
      expect(read(tar(file("f", "", { mtime: 2 ** 53 - 1 })))).toBe('layer code@v7: refused entry "f": time stamp beyond the year 275760')
      expect(read(tar(pax([["atime", "-9000000000000"]]), file("f")))).toBe('layer code@v7: refused entry "f": time stamp beyond the year 275760')
      // found by the differential test: GNU tar fails on a header uid out of range even when PAX replaces it
      expect(read(tar(pax([["uid", "0"]]), file("f", "", { uid: 2n ** 40n })))).toBe('layer code@v7: refused entry "f": uid or gid out of range')
      expect(read(tar(file("f", "", { uid: -1 })))).toBe('layer code@v7: refused entry "f": uid is negative')
      expect(read(tar(file("f", "", { uid: 2n ** 40n })))).toBe('layer code@v7: refused entry "f": uid or gid out of range')
      expect(read(tar(header({ name: "f", patch: (b) => b.write("12x", 100) })))).toBe('layer code@v7: refused entry "f": mode is not an octal number')
    })
  })

  describe("entry kinds", () => {
    it("refuses sparse, unknown types, data on non-files and a file named like a directory", () => {
      expect(read(tar(file("s", "x", { type: "S" })))).toBe('layer code@v7: refused entry "s": GNU sparse files are not supported')
      expect(read(tar(file("u", "x", { type: "Z" })))).toBe('layer code@v7: refused entry "u": unsupported entry type "Z"')
      expect(read(tar(file("u", "", { type: "D" })))).toBe('layer code@v7: refused entry "u": unsupported entry type "D"')
      expect(read(tar(header({ name: "d/", type: "5", size: 3 }), Buffer.alloc(512)))).toBe('layer code@v7: refused entry "d/": a dir entry with 3 bytes of data')
      expect(read(tar(file("f/", "x")))).toBe('layer code@v7: refused entry "f/": a file entry whose name ends with "/"')
      expect(read(tar(gnuLong("K", "t"), file("f")))).toBe('layer code@v7: refused entry "f": a link name on a file entry')
    })
  })

  describe("path rules", () => {
    it("refuses .. in paths and hard link targets, empty paths; strips nothing (names are as in the archive)", () => {
      expect(read(tar(file("a/../../x")))).toBe('layer code@v7: refused entry "a/../../x": path contains a ".." component')
      expect(read(tar(hardlink("h", "../x")))).toBe('layer code@v7: refused entry "h": hard link target contains a ".." component')
      expect(read(tar(hardlink("h", "./")))).toBe('layer code@v7: refused entry "h": hard link to the root directory')
      expect(read(tar(file("./")))).toBe('layer code@v7: refused entry "./": a file entry whose name ends with "/"')
      expect(read(tar(file(".")))).toBe('layer code@v7: refused entry ".": empty path')
      expect(paths(read(tar(file("/abs/x"), symlink("s", "../../anywhere"), dir("./"))))).toEqual(["/abs/x", "s", "./"])
    })

    it("refuses paths over 4096 bytes or 1024 components at once, naming the entry cut and escaped", () => {
      const deep = "a/".repeat(48000) + "f"
      const r = read(tar(pax([["path", deep]]), file("x")))
      expect(r).toMatch(/^layer code@v7: refused entry "(a\/){100}…": path is longer than 4096 bytes$/)
      expect(read(tar(pax([["path", "a/".repeat(1024) + "f"]]), file("x")))).toMatch(/path has more than 1024 components$/)
      expect(paths(read(tar(pax([["path", "a/".repeat(1023) + "f"]]), file("x"))))).toHaveLength(1)
      expect(read(tar(pax([["path", "\u001b[2J\u202e..\n"]]), file("x")))).toBe("layer code@v7: PAX path holds a newline")
      expect(read(tar(pax([["path", "\u001b[2J\u202e/../x"]]), file("x")))).toBe(
        'layer code@v7: refused entry "\\x1b[2J\\u202e/../x": path contains a ".." component'
      )
    })
  })

  it("passes a sink's throw through, and stays failed", () => {
    const p = new TarParser({ entry: () => { throw new Error("sink says no") }, data: () => {}, entryEnd: () => {} }, "l")
    expect(() => p.write(tar(file("a")))).toThrow("sink says no")
    expect(() => p.write(eof())).toThrow("sink says no")
  })
})
