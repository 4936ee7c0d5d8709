// Reading a layer file (gzip'd tar) the one way: Gzip.ts in front of TarParser.ts, whose path rules
// (PathRules.ts) every door shares. `readLayer` streams entries to a sink on this thread (the
// agent's unpacker); `checkLayerFile` only checks; `checkLayerInWorker` checks (and hashes) on a
// worker thread, so a server or a CLI busy with other work is not held up by inflating and parsing.
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import type { Worker } from "node:worker_threads"
import { startWorker } from "../fs/WorkerModule.js"
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { gunzip } from "./Gzip.js"
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
  /** Every chunk of the file, in order (to hash it on the way). */
  readonly onInput?: (chunk: Buffer) => void
  /** Asked after each inflated chunk went through the parser: a promise holds reading back until it settles. */
  readonly room?: () => Promise<void> | undefined
}

const reason = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** Any failure as one of the two typed failures: a refusal stays one, everything else is "cannot read". */
export const asLayerFailure = (label: string, e: unknown): LayerRefused | LayerUnreadable =>
  e instanceof LayerRefused || e instanceof LayerUnreadable ? e : new LayerUnreadable({ layer: label, reason: reason(e) })

async function* chunks(file: string, label: string, opts: ReadOptions): AsyncGenerator<Buffer> {
  const input = createReadStream(file, { highWaterMark: 1 << 20, ...(opts.signal ? { signal: opts.signal } : {}) })
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      opts.onInput?.(chunk)
      yield chunk
    }
  } catch (e) {
    throw new LayerUnreadable({ layer: label, reason: opts.signal?.aborted ? "interrupted" : `${file}: ${reason(e)}` })
  } finally {
    input.destroy()
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
    const parser = new TarParser(w.sink, label)
    const stats = await gunzip(chunks(file, label, opts), label, (chunk) => {
      parser.write(chunk)
      return w.room?.()
    })
    parser.end()
    return { entries: parser.entries, bytes: stats.compressed, tarBytes: stats.inflated }
  } catch (e) {
    throw w.ownError(e) ? e : asLayerFailure(label, e)
  }
}

const ignore: TarSink = { entry: () => {}, data: () => {}, entryEnd: () => {} }

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

/** The worker's whole job (LayerCheck.worker.ts runs it). */
export const runCheck = async (input: WorkerInput): Promise<WorkerReply> => {
  const hash = input.hash ? createHash("sha256") : undefined
  try {
    const r = await readLayer(input.file, input.label, ignore, hash ? { onInput: (c) => hash.update(c) } : {})
    return { ok: { entries: r.entries, bytes: r.bytes, hash: hash?.digest("hex") } }
  } catch (e) {
    const f = asLayerFailure(input.label, e)
    return f instanceof LayerRefused ? { refused: { layer: f.layer, entry: f.entry, reason: f.reason } } : { unreadable: f.reason }
  }
}

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
      worker = startWorker(import.meta.url, "archive/LayerCheck.worker", { workerData: input })
    } catch (e) {
      return resume(Effect.fail(new LayerUnreadable({ layer: label, reason: `cannot start the check: ${reason(e)}` })))
    }
    worker.once("message", (m: WorkerReply) => {
      if ("ok" in m) settle(Effect.succeed(m.ok))
      else if ("refused" in m) settle(Effect.fail(new LayerRefused(m.refused)))
      else settle(Effect.fail(new LayerUnreadable({ layer: label, reason: m.unreadable })))
    })
    worker.once("error", (cause) => settle(Effect.fail(new LayerUnreadable({ layer: label, reason: `checking failed: ${cause.message}` }))))
    worker.once("exit", (code) => settle(Effect.fail(new LayerUnreadable({ layer: label, reason: `checking stopped (worker exit ${code})` }))))
    return Effect.sync(() => {
      settled = true
      void worker.terminate()
    })
  })
