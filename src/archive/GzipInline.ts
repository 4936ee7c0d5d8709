// The strict gunzip of Gzip.ts (same rules, same refusals) inflating on the calling thread into one
// reused output buffer, for a thread that does nothing else: the layer check's worker. node:zlib's
// streams allocate a new output buffer per chunk (a GiB layer leaves a GiB of dead buffers for the GC,
// the check's largest cost after sha256) and hop through the thread pool and a Readable per chunk;
// here the inflater is driven the way zlib.inflateRawSync drives it (its handle's writeSync), and
// zlib reports exactly how much input it took, so the end of the deflate data needs no bookkeeping.
import * as zlib from "node:zlib"
import { LayerRefused } from "../domain/ArchiveErrors.js"
import { crc32, type GzipStats, gzipHeaderLength, INFLATE_CHUNK, inflateFailure, notGzip, Tail } from "./Gzip.js"

/** The parts of node:zlib's private handle that inflateRawSync uses (lib/zlib.js processChunkSync). */
interface ZlibHandle {
  writeSync(flush: number, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number): void
  onerror: (message: string, errno: number, code: string) => void
  close(): void
}

/** Whether this Node's zlib has the handle shape RawInflater needs (checked once). */
export const inlineInflateAvailable: boolean = (() => {
  try {
    const z = zlib.createInflateRaw() as unknown as { _handle?: Partial<ZlibHandle>; _writeState?: unknown; close(): void }
    const ok = typeof z._handle?.writeSync === "function" && z._writeState instanceof Uint32Array && z._writeState.length === 2
    z.close()
    return ok
  } catch {
    return false
  }
})()

/** Raw inflate on this thread into `out`, reused for every call. */
class RawInflater {
  readonly out: Buffer
  private readonly z: zlib.InflateRaw
  private readonly handle: ZlibHandle
  /** [output room left, input left] after the last write (zlib's _writeState). */
  private readonly state: Uint32Array
  private error: Error | undefined
  /** The deflate data ended. */
  ended = false

  constructor(outSize: number) {
    this.out = Buffer.allocUnsafeSlow(outSize)
    this.z = zlib.createInflateRaw()
    const z = this.z as unknown as { _handle: ZlibHandle; _writeState: Uint32Array }
    this.handle = z._handle
    this.state = z._writeState
    // zlib reports a failure through this callback, during writeSync; the stream's own handler would destroy it.
    this.handle.onerror = (message, errno, code) => void (this.error ??= Object.assign(new Error(message), { errno, code }))
  }

  /** Inflates from `input` at `at` until the output is full, the input is used up or the data ended: bytes taken and made. */
  write(input: Buffer, at: number, flush: number): { readonly taken: number; readonly made: number } {
    const room = this.out.length
    this.handle.writeSync(flush, input, at, input.length - at, this.out, 0, room)
    if (this.error !== undefined) throw this.error
    const made = room - this.state[0]!
    const taken = input.length - at - this.state[1]!
    // zlib stops short of both limits only at the end of the deflate data.
    if (made < room && at + taken < input.length) this.ended = true
    return { taken, made }
  }

  close(): void {
    this.z.close()
  }
}

const empty = Buffer.alloc(0)
/** Output chunks between two turns of the event loop (1 MiB with the default buffer). */
const YIELD_EVERY = 4

/**
 * gunzip (Gzip.ts) on this thread, pushed one input chunk at a time: `write` and `end` yield the tar
 * they inflate, chunk by chunk, as views of one reused buffer (each valid until the next is asked for).
 * Synchronous, so that a thread that reads back a file as it is written (FileHasher's worker) can check
 * each chunk as it hashes it; gunzipInline drives it from an async source.
 */
export class InlineGunzip {
  private readonly z: RawInflater
  private readonly tail: Tail
  private readonly refused: (reason: string) => LayerRefused
  private readonly failure: (e: unknown) => unknown
  private crc = 0
  private inflated = 0
  private compressed = 0
  /** The gzip header so far, until it is complete. */
  private head: Buffer | undefined = Buffer.alloc(0)

  constructor(label: string, outSize = INFLATE_CHUNK) {
    this.refused = (reason) => new LayerRefused({ layer: label, entry: "", reason })
    this.failure = inflateFailure(this.refused)
    this.tail = new Tail(this.refused)
    this.z = new RawInflater(outSize)
  }

  /** The next bytes of the file. */
  *write(chunk: Buffer): Generator<Buffer, void> {
    this.compressed += chunk.length
    if (this.head === undefined) return yield* this.inflate(chunk, zlib.constants.Z_NO_FLUSH)
    this.head = Buffer.concat([this.head, chunk])
    const len = gzipHeaderLength(this.head)
    if (typeof len === "string") throw this.refused(len)
    if (len === undefined) return
    const rest = this.head.subarray(len)
    this.head = undefined
    yield* this.inflate(rest, zlib.constants.Z_NO_FLUSH)
  }

  /** No more input: the rest of the tar, then the sizes once the trailer matched. */
  *end(): Generator<Buffer, GzipStats> {
    if (this.head !== undefined) {
      const len = gzipHeaderLength(this.head)
      throw this.refused(typeof len === "string" ? len : this.head.length === 0 ? notGzip(this.head) : "truncated gzip header")
    }
    // No more input: zlib fails with "unexpected end of file" unless the deflate data is complete.
    if (!this.z.ended) yield* this.inflate(empty, zlib.constants.Z_FINISH)
    this.tail.verify(this.crc, this.inflated)
    return { compressed: this.compressed, inflated: this.inflated }
  }

  close(): void {
    this.z.close()
  }

  /** Inflates all of `input`; what follows the deflate data goes to the tail. */
  private *inflate(input: Buffer, flush: number): Generator<Buffer, void> {
    const z = this.z
    let at = 0
    while (!z.ended) {
      let step: { readonly taken: number; readonly made: number }
      try {
        step = z.write(input, at, flush)
      } catch (e) {
        throw this.failure(e)
      }
      at += step.taken
      if (step.made > 0) {
        const out = z.out.subarray(0, step.made)
        this.crc = crc32(out, this.crc)
        this.inflated += step.made
        yield out
      }
      if (step.made < z.out.length && at === input.length) return
    }
    this.tail.add(input.subarray(at))
  }
}

/**
 * gunzip (Gzip.ts) on this thread. `onData` gets views of one reused buffer: each is valid only
 * during the call (or until its returned promise settles), so a consumer that keeps data must copy it.
 * A chunk of `source` is read only until the next one is asked for, as for gunzip.
 */
export const gunzipInline = async (
  source: AsyncIterable<Buffer>,
  label: string,
  onData: (chunk: Buffer) => void | Promise<void>,
  outSize = INFLATE_CHUNK
): Promise<GzipStats> => {
  const gz = new InlineGunzip(label, outSize)
  let made = 0 // output chunks
  const drain = async <R>(outs: Generator<Buffer, R>): Promise<R> => {
    for (;;) {
      const next = outs.next()
      if (next.done === true) return next.value
      const r = onData(next.value)
      if (r !== undefined) await r
      // Let the event loop run between chunks (as a zlib stream does): an interruption, a timer or a
      // message must not wait for a highly compressed input chunk's hundreds of MiB.
      else if (++made % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve))
    }
  }
  try {
    for await (const chunk of source) await drain(gz.write(chunk))
    return await drain(gz.end())
  } finally {
    gz.close()
  }
}
