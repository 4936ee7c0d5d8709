// Reading a layer file (gzip'd tar) the one way: Gzip.ts in front of TarParser.ts, whose path rules
// (PathRules.ts) every door shares. `readLayer` streams entries to a sink on this thread (the
// agent's unpacker); `checkLayerFile` only checks; `checkLayerInWorker` checks (and hashes) on a
// worker thread, so a server or a CLI busy with other work is not held up by inflating and parsing.
// `checkLayer` spares a small layer that worker (its start costs ~30-100 ms of CPU, the check of a
// small layer well under 1 ms): it is checked here, within a budget of inflated bytes (a bomb goes on
// to the worker), as FileHasher.ts hashes a small file on the calling thread.
import { Effect, Exit } from "effect"
import { createHash, type Hash } from "node:crypto"
import { type FileHandle, open } from "node:fs/promises"
import type { Worker } from "node:worker_threads"
import { INLINE_MAX } from "../fs/FileHasher.js"
import { startWorker } from "../fs/WorkerModule.js"
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { gunzip } from "./Gzip.js"
import { gunzipInline, inlineInflateAvailable } from "./GzipInline.js"
import { failureReply } from "./LayerCheckStream.js"
import { TarParser, type TarSink } from "./TarParser.js"

export interface LayerRead {
  /** Entries in the tar. */
  readonly entries: number
  /** Bytes of the file. */
  readonly bytes: number
  /** Bytes of the tar stream. */
  readonly tarBytes: number
}

export interface ReadOptions {
  readonly signal?: AbortSignal
  /** Every chunk of the file, in order (to hash it on the way); valid only during the call (see chunks). */
  readonly onInput?: (chunk: Buffer) => void
  /** Asked after each inflated chunk went through the parser: a promise holds reading back until it settles. */
  readonly room?: () => Promise<void> | undefined
  /**
   * Inflate on this thread into one reused buffer (GzipInline.ts) rather than through a zlib stream: for
   * a thread that only checks, with a sink that keeps no data past its call (the checks' workers).
   */
  readonly inline?: boolean
}

const reason = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** Any failure as one of the two typed failures: a refusal stays one, everything else is "cannot read". */
export const asLayerFailure = (label: string, e: unknown): LayerRefused | LayerUnreadable =>
  e instanceof LayerRefused || e instanceof LayerUnreadable ? e : new LayerUnreadable({ layer: label, reason: reason(e) })

/** Bytes per read, and reads in flight ahead of the reader: see chunks. */
const READ_SIZE = 1 << 20
const RING = 2

/**
 * The file's bytes, READ_SIZE at a time, in RING buffers reused round robin: a new buffer per read
 * (what createReadStream does) leaves a GiB of dead ArrayBuffers for V8 to collect lazily, which the
 * process's RSS shows (docs/bench.md). So each chunk is only valid until the next one is asked for
 * (gunzip copies what it keeps longer); the next read runs while the reader works on this one.
 */
async function* chunks(file: string, label: string, opts: ReadOptions): AsyncGenerator<Buffer> {
  const unreadable = (e: unknown) =>
    new LayerUnreadable({ layer: label, reason: opts.signal?.aborted ? "interrupted" : `${file}: ${reason(e)}` })
  const ring = Array.from({ length: RING }, () => Buffer.allocUnsafeSlow(READ_SIZE))
  let handle: FileHandle | undefined
  let next: Promise<number> | undefined
  try {
    handle = await open(file, "r")
    const fh = handle
    const read = (n: number) => fh.read(ring[n % RING]!, 0, READ_SIZE, null).then((r) => r.bytesRead)
    next = read(0)
    for (let n = 0; ; n++) {
      if (opts.signal?.aborted) throw opts.signal.reason
      const got = await next
      next = undefined
      if (got === 0) return
      const chunk = ring[n % RING]!.subarray(0, got)
      next = read(n + 1)
      opts.onInput?.(chunk)
      yield chunk
    }
  } catch (e) {
    throw e instanceof LayerUnreadable ? e : unreadable(e)
  } finally {
    await next?.catch(() => {}) // a read into the ring must not outlive it
    await handle?.close().catch(() => {})
  }
}

/** `sink` and `room` as given, remembering the first error either throws. */
const watched = (sink: TarSink, room: ReadOptions["room"]) => {
  let thrown: { readonly error: unknown } | undefined
  const keep = <A extends Array<unknown>, R>(f: (...a: A) => R) => (...a: A): R => {
    try {
      return f(...a)
    } catch (error) {
      thrown ??= { error }
      throw error
    }
  }
  return {
    sink: { entry: keep((e) => sink.entry(e)), data: keep((c) => sink.data(c)), entryEnd: keep(() => sink.entryEnd()) } satisfies TarSink,
    room: room && keep(room),
    ownError: (e: unknown) => thrown !== undefined && thrown.error === e
  }
}

/**
 * Reads the layer at `file` (named `label` in messages), handing its entries to `sink`. Rejects with
 * LayerRefused (content) or LayerUnreadable (I/O), or with what `sink` or `room` threw, unchanged (the
 * agent's extractor and writer have failures of their own); never with anything else.
 */
export const readLayer = async (file: string, label: string, sink: TarSink, opts: ReadOptions = {}): Promise<LayerRead> => {
  const w = watched(sink, opts.room)
  try {
    return await readLayerFrom(chunks(file, label, opts), label, w.sink, { ...(w.room ? { room: w.room } : {}), inline: opts.inline === true })
  } catch (e) {
    throw w.ownError(e) ? e : asLayerFailure(label, e)
  }
}

export interface FromOptions {
  readonly room?: ReadOptions["room"]
  readonly inline?: boolean
  /** Past this many bytes of tar, stop with OverBudget (a check on a thread that serves others). */
  readonly maxTar?: number
}

/** readLayerFrom went past its `maxTar`: no verdict (checkBytesHere hands the layer to a worker then). */
export class OverBudget extends Error {}

/** The same reading over the file's bytes as `source` yields them (deployctl feeds what it uploads). */
export const readLayerFrom = async (source: AsyncIterable<Buffer>, label: string, sink: TarSink, opts: FromOptions = {}): Promise<LayerRead> => {
  const parser = new TarParser(sink, label)
  const max = opts.maxTar ?? Infinity
  let tar = 0
  const stats = await (opts.inline && inlineInflateAvailable ? gunzipInline : gunzip)(source, label, (chunk) => {
    if ((tar += chunk.length) > max) throw new OverBudget(`more than ${max} bytes of tar`)
    parser.write(chunk)
    return opts.room?.()
  })
  parser.end()
  return { entries: parser.entries, bytes: stats.compressed, tarBytes: stats.inflated }
}

export const ignore: TarSink = { entry: () => {}, data: () => {}, entryEnd: () => {} }

/** Checks the layer at `file` on this thread: the refusal an agent would give, or its size. */
export const checkLayerFile = (file: string, label: string): Effect.Effect<{ entries: number; bytes: number }, LayerRefused | LayerUnreadable> =>
  Effect.tryPromise({
    try: (signal) => readLayer(file, label, ignore, { signal }),
    catch: (e) => asLayerFailure(label, e)
  }).pipe(Effect.map(({ entries, bytes }) => ({ entries, bytes })))

export interface Checked {
  readonly entries: number
  readonly bytes: number
  /** sha256 of the file, lowercase hex (when asked for). */
  readonly hash: string | undefined
}

/** The message a worker sends back. */
export type WorkerReply =
  | { readonly ok: Checked }
  | { readonly refused: { readonly layer: string; readonly entry: string; readonly reason: string } }
  | { readonly unreadable: string }

export interface WorkerInput {
  readonly file: string
  readonly label: string
  readonly hash: boolean
}

/**
 * The reply for `read`'s outcome (`hash`, fed what was read, digested on success). An OverBudget is
 * not a verdict: it is thrown on, unchanged.
 */
export const replyOf = async (label: string, read: () => Promise<LayerRead>, hash?: Hash): Promise<WorkerReply> => {
  try {
    const r = await read()
    return { ok: { entries: r.entries, bytes: r.bytes, hash: hash?.digest("hex") } }
  } catch (e) {
    if (e instanceof OverBudget) throw e
    return failureReply(asLayerFailure(label, e))
  }
}

/** A reply as an outcome (an Exit is an Effect too). */
export const fromReply = (label: string, m: WorkerReply): Exit.Exit<Checked, LayerRefused | LayerUnreadable> =>
  "ok" in m ? Exit.succeed(m.ok) : "refused" in m ? Exit.fail(new LayerRefused(m.refused)) : Exit.fail(new LayerUnreadable({ layer: label, reason: m.unreadable }))

/** The worker's whole job (LayerCheck.worker.ts runs it; `room` as in ReadOptions). */
export const runCheck = (input: WorkerInput, room?: ReadOptions["room"]): Promise<WorkerReply> => {
  const hash = input.hash ? createHash("sha256") : undefined
  return replyOf(input.label, () => readLayer(input.file, input.label, ignore, { inline: true, ...(hash ? { onInput: (c: Buffer) => hash.update(c) } : {}), ...(room ? { room } : {}) }), hash)
}

let workersStarted = 0

/** Check workers this process started (tests: a small layer starts none). */
export const checkWorkersStarted = (): number => workersStarted

/** Starts LayerCheck.worker.ts on `input` (a WorkerInput, or LayerFeed's FedInput). */
export const startCheckWorker = (input: object): Worker => {
  const w = startWorker(import.meta.url, "archive/LayerCheck.worker", { workerData: input })
  workersStarted++
  return w
}

/**
 * Tar bytes a check on the calling thread inflates before it gives up and leaves the layer to a worker:
 * INLINE_MAX of gzip can inflate to a thousand times as much, and a bomb must not hold a thread that
 * serves others for more than a few ms (4 MiB of tar inflate and parse in ~2-3 ms).
 */
export const INLINE_TAR_BUDGET = 4 << 20

/**
 * Checks (and with `hash`, hashes) `bytes`, a whole layer file, on this thread: the verdict, or
 * undefined when its tar is larger than INLINE_TAR_BUDGET (check it on a worker then).
 */
export const checkBytesHere = async (bytes: Buffer, label: string, hash: boolean): Promise<WorkerReply | undefined> => {
  const h = hash ? createHash("sha256").update(bytes) : undefined
  async function* once() {
    yield bytes
  }
  try {
    return await replyOf(label, () => readLayerFrom(once(), label, ignore, { inline: true, maxTar: INLINE_TAR_BUDGET }), h)
  } catch (e) {
    if (e instanceof OverBudget) return undefined
    throw e
  }
}

/** The whole of the file open at `fh` when it holds at most `max` bytes; undefined when it holds more. */
export const readUpTo = async (fh: FileHandle, max: number): Promise<Buffer | undefined> => {
  const { size } = await fh.stat()
  if (size > max) return undefined
  // One byte more than the size: a file that grew since is seen to.
  const buf = Buffer.allocUnsafe(Math.min(size, max) + 1)
  let got = 0
  for (;;) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, got)
    if (bytesRead === 0) return buf.subarray(0, got)
    got += bytesRead
    if (got > max) return undefined
    if (got === buf.length) return readUpTo(fh, max) // it grew, but may still be small
  }
}

/**
 * Checks (and with `hash`, hashes) the layer at `file` on this thread when it is small (at most
 * INLINE_MAX bytes, FileHasher's threshold) and its tar within INLINE_TAR_BUDGET: no worker starts.
 * Undefined when it is not (check it on a worker then: checkLayerInWorker). The same verdicts.
 */
export const checkSmallLayer = (file: string, label: string, opts: { readonly hash?: boolean } = {}): Effect.Effect<Checked | undefined, LayerRefused | LayerUnreadable> =>
  Effect.tryPromise({
    try: async () => {
      let bytes: Buffer | undefined
      try {
        const fh = await open(file, "r")
        try {
          bytes = await readUpTo(fh, INLINE_MAX)
        } finally {
          await fh.close().catch(() => {})
        }
      } catch (e) {
        // The worker's message for the same failure (chunks).
        throw new LayerUnreadable({ layer: label, reason: `${file}: ${reason(e)}` })
      }
      return bytes === undefined ? undefined : checkBytesHere(bytes, label, opts.hash === true)
    },
    catch: (e) => asLayerFailure(label, e)
  }).pipe(Effect.flatMap((r) => (r === undefined ? Effect.succeed(undefined) : fromReply(label, r))))

/** Checks (and with `hash`, hashes) the layer at `file`: on this thread when it is small (checkSmallLayer), else on a worker. */
export const checkLayer = (file: string, label: string, opts: { readonly hash?: boolean } = {}): Effect.Effect<Checked, LayerRefused | LayerUnreadable> =>
  Effect.flatMap(checkSmallLayer(file, label, opts), (c) => (c !== undefined ? Effect.succeed(c) : checkLayerInWorker(file, label, opts)))

/**
 * Checks (and with `hash`, hashes) the layer at `file` on a worker thread. Interrupting stops the
 * worker. Every outcome is typed: a crashed worker is "cannot read", never a defect.
 */
export const checkLayerInWorker = (file: string, label: string, opts: { readonly hash?: boolean } = {}): Effect.Effect<Checked, LayerRefused | LayerUnreadable> =>
  Effect.async<Checked, LayerRefused | LayerUnreadable>((resume) => {
    let settled = false
    const settle = (e: Effect.Effect<Checked, LayerRefused | LayerUnreadable>) => {
      if (settled) return
      settled = true
      resume(e)
      void worker.terminate()
    }
    const input: WorkerInput = { file, label, hash: opts.hash === true }
    let worker: Worker
    try {
      worker = startCheckWorker(input)
    } catch (e) {
      return resume(Effect.fail(new LayerUnreadable({ layer: label, reason: `cannot start the check: ${reason(e)}` })))
    }
    worker.once("message", (m: WorkerReply) => settle(fromReply(label, m)))
    worker.once("error", (cause) => settle(Effect.fail(new LayerUnreadable({ layer: label, reason: `checking failed: ${cause.message}` }))))
    worker.once("exit", (code) => settle(Effect.fail(new LayerUnreadable({ layer: label, reason: `checking stopped (worker exit ${code})` }))))
    return Effect.sync(() => {
      settled = true
      void worker.terminate()
    })
  })
