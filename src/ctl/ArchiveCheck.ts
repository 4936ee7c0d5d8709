// The tar.gz check and the sha256 of `deployctl addver -file`, on a worker thread that reads the
// file on its own (from the page cache, as the upload reads it): gunzip, the tar header parser
// and hashing then cost the main thread nothing, and the main thread — which frames, encrypts and
// sends the SFTP packets and was the bottleneck — only reads and uploads.
import { Data, Effect } from "effect"
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"

/** The file is not a readable .tar.gz; `reason` says what broke. */
export class InvalidArchive extends Data.TaggedError("InvalidArchive")<{ readonly file: string; readonly reason: string }> {
  get message() {
    return `${this.file} is not a valid .tar.gz (${this.reason}); no version was added`
  }
}

/** The local file cannot be read. */
export class FileError extends Data.TaggedError("FileError")<{ readonly file: string; readonly reason: string; readonly cause?: unknown }> {
  get message() {
    return `cannot read ${this.file}: ${this.reason}`
  }
}

export interface Checked {
  /** sha256 of the whole file, lowercase hex. */
  readonly hash: string
  readonly bytes: number
}

// CommonJS run with `eval: true`, so it works the same from dist/ and from the TypeScript sources
// under test. tar is required by the absolute path resolved here.
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
const fs = require("node:fs")
const zlib = require("node:zlib")
const { createHash } = require("node:crypto")
const tar = require(workerData.tar)
const hash = createHash("sha256")
let bytes = 0
let done = false
let input
const send = (m) => {
  if (done) return
  done = true
  if (input) input.destroy()
  parentPort.postMessage(m)
}
// Large output chunks: far less per-chunk work than zlib's 16 KiB default.
const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024 })
// strict: header checksum errors and truncation become 'error' instead of 'warn'.
const parser = new tar.Parser({ strict: true, onReadEntry: (entry) => entry.resume() })
gunzip.on("error", (e) => send({ invalid: e.message }))
parser.on("error", (e) => send({ invalid: e.message }))
parser.on("end", () => send({ hash: hash.digest("hex"), bytes }))
gunzip.pipe(parser)
input = fs.createReadStream(workerData.file, { highWaterMark: 1 << 20 })
input.on("error", (e) => send({ unreadable: e.message }))
input.on("data", (chunk) => {
  hash.update(chunk)
  bytes += chunk.length
  if (!gunzip.write(chunk)) input.pause()
})
gunzip.on("drain", () => input.resume())
input.on("end", () => gunzip.end())
`

const tarPath = createRequire(import.meta.url).resolve("tar")

type Reply = { hash: string; bytes: number } | { invalid: string } | { unreadable: string }

/**
 * Checks that `file` is a gzip-compressed tar archive with at least one valid header, and hashes
 * it. `name` is how messages call the file. Interrupting stops the worker.
 */
export const checkArchive = (file: string, name: string = file): Effect.Effect<Checked, InvalidArchive | FileError> =>
  Effect.async<Checked, InvalidArchive | FileError>((resume) => {
    let settled = false
    const worker = new Worker(workerSource, { eval: true, workerData: { file, tar: tarPath } })
    const settle = (e: Effect.Effect<Checked, InvalidArchive | FileError>) => {
      if (settled) return
      settled = true
      resume(e)
      void worker.terminate()
    }
    worker.once("message", (m: Reply) => {
      if ("hash" in m) settle(Effect.succeed({ hash: m.hash, bytes: m.bytes }))
      else if ("invalid" in m) settle(Effect.fail(new InvalidArchive({ file: name, reason: m.invalid.replace(/^TAR_\w+: /, "") })))
      else settle(Effect.fail(new FileError({ file: name, reason: m.unreadable })))
    })
    worker.once("error", (cause) => settle(Effect.fail(new FileError({ file: name, reason: `checking failed: ${cause.message}`, cause }))))
    worker.once("exit", (code) => settle(Effect.fail(new FileError({ file: name, reason: `checking stopped (worker exit ${code})` }))))
    return Effect.sync(() => {
      settled = true
      void worker.terminate()
    })
  })
