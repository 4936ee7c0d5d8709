// Benchmark inputs, made once and cached under $BENCH_DATA (default <tmpdir>/deploy-tools-bench-data):
// an incompressible tar.gz of a given size, and a tar.gz of many small files. Both are valid tar.gz.
import { createHash } from "node:crypto"
import { createReadStream, existsSync } from "node:fs"
import { mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { runOk } from "./proc.js"

export interface DataFile {
  readonly path: string
  readonly bytes: number
  readonly sha256: string
}

export const dataDir = (): string => process.env["BENCH_DATA"] ?? path.join(os.tmpdir(), "deploy-tools-bench-data")

export const sha256File = (file: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const h = createHash("sha256")
    createReadStream(file, { highWaterMark: 1 << 20 })
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")))
  })

const cached = async (name: string, make: (tmpOut: string, scratch: string) => Promise<void>): Promise<DataFile> => {
  const dir = dataDir()
  await mkdir(dir, { recursive: true })
  const out = path.join(dir, name)
  const meta = `${out}.sha256`
  if (existsSync(out) && existsSync(meta)) {
    const [sha256, bytes] = (await readFile(meta, "utf8")).trim().split(" ")
    return { path: out, sha256: sha256!, bytes: Number(bytes) }
  }
  const scratch = await mkdtemp(path.join(dir, "make-"))
  try {
    const tmp = path.join(scratch, "out.tar.gz")
    await make(tmp, scratch)
    const sha256 = await sha256File(tmp)
    const bytes = Number((await runOk("stat", ["-c", "%s", tmp])).stdout.trim())
    await rename(tmp, out)
    await writeFile(meta, `${sha256} ${bytes}\n`)
    return { path: out, sha256, bytes }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/**
 * A tar.gz of one random file of `bytes` bytes, gzip -1: incompressible, so the archive is about
 * `bytes` long and every byte crosses the wire. `tag` makes distinct files of the same size.
 */
export const randomTarGz = (bytes: number, tag = ""): Promise<DataFile> =>
  cached(`random-${bytes}${tag ? `-${tag}` : ""}.tar.gz`, async (out, scratch) => {
    const payload = path.join(scratch, "payload.bin")
    await runOk("sh", ["-c", 'head -c "$1" /dev/urandom > "$2"', "sh", String(bytes), payload])
    await runOk("sh", ["-c", 'tar -C "$1" -cf - payload.bin | gzip -1 > "$2"', "sh", scratch, out])
  })

/** A tar.gz of `count` small files (64 B – 4 KiB of base64 text) in directories of 100. */
export const smallFilesTarGz = (count: number): Promise<DataFile> =>
  cached(`small-${count}.tar.gz`, async (out, scratch) => {
    const tree = path.join(scratch, "tree")
    let seed = 12345
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff)
    const pool = (await import("node:crypto")).randomBytes(8192).toString("base64")
    for (let d = 0; d < Math.ceil(count / 100); d++) {
      const sub = path.join(tree, `d${String(d).padStart(4, "0")}`)
      await mkdir(sub, { recursive: true })
      const writes: Promise<void>[] = []
      for (let i = d * 100; i < Math.min(count, (d + 1) * 100); i++) {
        const len = 64 + Math.floor(rnd() * 4032)
        const off = Math.floor(rnd() * (pool.length - len))
        writes.push(writeFile(path.join(sub, `f${i}.txt`), pool.slice(off, off + len)))
      }
      await Promise.all(writes)
    }
    await runOk("tar", ["-C", tree, "-czf", out, "."])
  })

/** A ustar header block of an entry with no content (a directory when `name` ends with "/"). */
const emptyEntryHeader = (name: string): Buffer => {
  const b = Buffer.alloc(512)
  const dir = name.endsWith("/")
  b.write(name, 0, 100, "utf8")
  b.write(dir ? "0000755\0" : "0000644\0", 100, "ascii")
  b.write("0000000\0", 108, "ascii")
  b.write("0000000\0", 116, "ascii")
  b.write("00000000000\0", 124, "ascii")
  b.write("13767731200\0", 136, "ascii") // a fixed time (December 2020)
  b.write("        ", 148, "ascii")
  b.write(dir ? "5" : "0", 156, "ascii")
  b.write("ustar\0" + "00", 257, "ascii")
  let sum = 0
  for (const byte of b) sum += byte
  b.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii")
  return b
}

/**
 * A tar.gz of `count` empty files spread over `dirs` directories: the many-entries case, where only
 * the per-entry cost counts (written directly: making 200,000 files to tar them up takes longer).
 */
export const manyEntriesTarGz = (count: number, dirs: number): Promise<DataFile> =>
  cached(`entries-${count}-${dirs}.tar.gz`, async (out) => {
    const { createGzip } = await import("node:zlib")
    const { createWriteStream } = await import("node:fs")
    const { pipeline } = await import("node:stream/promises")
    const perDir = Math.ceil(count / dirs)
    async function* blocks() {
      for (let d = 0, n = 0; d < dirs && n < count; d++) {
        const dir = `d${String(d).padStart(4, "0")}/`
        const batch = [emptyEntryHeader(dir)]
        for (let i = 0; i < perDir && n < count; i++, n++) batch.push(emptyEntryHeader(`${dir}f${i}`))
        yield Buffer.concat(batch)
      }
      yield Buffer.alloc(1024)
    }
    await pipeline(blocks(), createGzip(), createWriteStream(out))
  })

/** A tiny valid tar.gz holding one file with `text` (for configuration churn). */
export const tinyTarGz = (name: string, text: string): Promise<DataFile> =>
  cached(`tiny-${name}.tar.gz`, async (out, scratch) => {
    await writeFile(path.join(scratch, "version.txt"), text)
    await runOk("tar", ["-C", scratch, "-czf", out, "version.txt"])
  })

/**
 * A copy of the tar.gz `src` at `dst` whose content differs by the gzip header's MTIME (bytes 4-7, which
 * no checksum covers): still valid, but a new sha256, so the registry remembers no verdict for it and
 * checks it anew (content-addressed: re-sending the same bytes would measure no check at all).
 */
export const distinctCopy = async (src: string, dst: string, n: number): Promise<string> => {
  await runOk("cp", [src, dst])
  const fh = await open(dst, "r+")
  try {
    const mtime = Buffer.alloc(4)
    mtime.writeUInt32LE((Date.now() / 1000 + n) >>> 0)
    await fh.write(mtime, 0, 4, 4)
  } finally {
    await fh.close()
  }
  return dst
}

/** Runs `use` on a distinctCopy of `src` at `dst`, removing the copy afterwards (it is as large as `src`). */
export const withDistinctCopy = async <T>(src: string, dst: string, n: number, use: (copy: string) => Promise<T>): Promise<T> => {
  try {
    return await use(await distinctCopy(src, dst, n))
  } finally {
    await rm(dst, { force: true })
  }
}
