// The layer check over bytes someone else reads: deployctl reads its file once, into buffers this
// feed lends it, and hands each chunk both to the upload and to a worker thread that hashes it and runs
// it through the strict reader (LayerCheck.ts). So the bytes checked and hashed are exactly the bytes
// sent, and a refusal is known while the upload is still running. The buffers are a ring of SLOTS
// ArrayBuffers that move (transferred, not copied) to the worker with each chunk and back to the feed
// when the worker is done: no new memory per chunk (fresh 2 MiB buffers cost page faults to fill and
// the worker's GC to free). Not SharedArrayBuffers: Buffer.copy out of one, which ssh2's packet framing
// does with every byte sent, is several times slower than out of an ArrayBuffer.
import { Deferred, Effect, Exit, type Scope } from "effect"
import { createHash } from "node:crypto"
import type { MessagePort, Worker } from "node:worker_threads"
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { asLayerFailure, checkBytesHere, type Checked, fromReply, ignore, readLayerFrom, replyOf, startCheckWorker, type WorkerReply } from "./LayerCheck.js"

/** Buffers of the ring: one being filled and sent by the caller, the rest read or waiting on the worker. */
const SLOTS = 5

export interface FedInput {
  readonly fed: true
  readonly label: string
  readonly hash: boolean
}

/** Main → worker: the next chunk, `length` bytes at the start of a slot's buffer (transferred), or the end of the file. */
type FeedMessage = { readonly slot: number; readonly buffer: ArrayBuffer; readonly length: number } | "end"
/** Worker → main, besides the final WorkerReply: the worker is done with a slot, its buffer transferred back. */
type Freed = { readonly free: number; readonly buffer: ArrayBuffer }

/** The worker's side: reads the chunks as they come, giving each slot back when done with it, and replies once (`room` as readLayerFrom's). */
export const runFed = async (input: FedInput, port: Pick<MessagePort, "on" | "postMessage">, room?: () => undefined): Promise<WorkerReply> => {
  const hash = input.hash ? createHash("sha256") : undefined
  const queue: Array<{ readonly slot: number; readonly chunk: Buffer }> = []
  let ended = false
  let wake: (() => void) | undefined
  port.on("message", (m: FeedMessage) => {
    if (m === "end") ended = true
    else queue.push({ slot: m.slot, chunk: Buffer.from(m.buffer, 0, m.length) })
    wake?.()
  })
  async function* source(): AsyncGenerator<Buffer> {
    for (;;) {
      const next = queue.shift()
      if (next !== undefined) {
        hash?.update(next.chunk)
        yield next.chunk
        // The reader asked for the next chunk: it is done with this one (gunzip's contract).
        const buffer = next.chunk.buffer as ArrayBuffer
        port.postMessage({ free: next.slot, buffer } satisfies Freed, [buffer])
      } else if (ended) return
      else await new Promise<void>((r) => (wake = r))
    }
  }
  return replyOf(input.label, () => readLayerFrom(source(), input.label, ignore, { ...(room ? { room } : {}), inline: true }), hash)
}

export interface LayerFeed {
  /**
   * A buffer of the ring to read the file's next bytes into (`chunkSize` bytes): waits while every one
   * is with the worker; fails once the check failed. It is the caller's until it pushes it.
   */
  readonly buffer: Effect.Effect<Buffer, LayerRefused | LayerUnreadable>
  /**
   * Hands `chunk` — the next bytes of the file, at the start of the last `buffer` — to the check, whose
   * worker reads it in place: the caller must not write to that buffer again (the next `buffer` is
   * another, or this one once the worker gave it back). Fails once the check failed.
   */
  readonly push: (chunk: Buffer) => Effect.Effect<void, LayerRefused | LayerUnreadable>
  /** Ends the input; the verdict, with the sha256 of every byte pushed (when asked for). */
  readonly end: Effect.Effect<Checked, LayerRefused | LayerUnreadable>
  /** Fails as soon as the check fails, never succeeds: race work that must stop then against it. */
  readonly failed: Effect.Effect<never, LayerRefused | LayerUnreadable>
}

/** Starts a fed check of a layer named `label`, read in chunks of up to `chunkSize` bytes, on a worker thread stopped with the scope. */
export const feedLayerCheck = (
  label: string,
  opts: { readonly hash?: boolean; readonly chunkSize: number }
): Effect.Effect<LayerFeed, LayerUnreadable, Scope.Scope> =>
  Effect.gen(function* () {
    const verdict = yield* Deferred.make<Checked, LayerRefused | LayerUnreadable>()
    const views = Array.from({ length: SLOTS }, () => Buffer.allocUnsafeSlow(opts.chunkSize))
    const input: FedInput = { fed: true, label, hash: opts.hash === true }
    const worker: Worker = yield* Effect.acquireRelease(
      Effect.try({
        try: () => startCheckWorker(input),
        catch: (e) => new LayerUnreadable({ layer: label, reason: `cannot start the check: ${(e as Error).message}` })
      }),
      (w) => Effect.promise(() => w.terminate())
    )
    const free = views.map((_, i) => i)
    let lent: number | undefined // the slot the caller holds
    let done = false // the verdict is in
    let wake: (() => void) | undefined // a caller waiting for a free slot
    const settle = (e: Exit.Exit<Checked, LayerRefused | LayerUnreadable>) => {
      done = true
      Deferred.unsafeDone(verdict, e)
      wake?.()
    }
    worker.on("message", (m: WorkerReply | Freed) => {
      if ("free" in m) {
        views[m.free] = Buffer.from(m.buffer)
        free.push(m.free)
        return wake?.()
      }
      settle(fromReply(label, m))
    })
    worker.once("error", (cause) => settle(Exit.fail(new LayerUnreadable({ layer: label, reason: `checking failed: ${cause.message}` }))))
    worker.once("exit", (code) => settle(Exit.fail(new LayerUnreadable({ layer: label, reason: `checking stopped (worker exit ${code})` }))))

    // Only a failure settles the verdict before the end.
    const early = Effect.flatMap(Deferred.await(verdict), () => Effect.fail(new LayerUnreadable({ layer: label, reason: "the check ended early" })))
    const room = Effect.async<void>((resume) => {
      const check = () => {
        if (free.length > 0 || done) {
          wake = undefined
          resume(Effect.void)
        } else wake = check
      }
      check()
      return Effect.sync(() => void (wake = undefined))
    })
    const buffer = Effect.zipRight(
      room,
      Effect.suspend(() => {
        if (done) return early
        lent = free.shift()!
        return Effect.succeed(views[lent]!)
      })
    )
    const push = (chunk: Buffer) =>
      Effect.suspend(() => {
        if (done) return early
        const slot = lent
        const buffer = views[slot ?? 0]!.buffer as ArrayBuffer
        if (slot === undefined || chunk.buffer !== buffer || chunk.byteOffset !== 0) {
          return Effect.die(new Error("LayerFeed.push: the chunk must start the buffer last lent"))
        }
        lent = undefined
        worker.postMessage({ slot, buffer, length: chunk.length } satisfies FeedMessage, [buffer])
        return Effect.void
      })
    const end = Effect.suspend(() => {
      worker.postMessage("end" satisfies FeedMessage)
      return Deferred.await(verdict)
    })
    const failed = Effect.flatMap(Deferred.await(verdict), () => Effect.never)
    return { buffer, push, end, failed }
  })

/**
 * Checks (and with `hash`, hashes) `bytes`, a whole layer file in memory: on this thread when its tar
 * is within INLINE_TAR_BUDGET (checkBytesHere: no worker starts), else fed to a worker.
 */
export const checkLayerBytes = (bytes: Buffer, label: string, opts: { readonly hash?: boolean } = {}): Effect.Effect<Checked, LayerRefused | LayerUnreadable> =>
  Effect.tryPromise({ try: () => checkBytesHere(bytes, label, opts.hash === true), catch: (e) => asLayerFailure(label, e) }).pipe(
    Effect.flatMap((reply) =>
      reply !== undefined
        ? fromReply(label, reply)
        : Effect.scoped(
            Effect.gen(function* () {
              const feed = yield* feedLayerCheck(label, { ...opts, chunkSize: Math.max(1, bytes.length) })
              const buf = yield* feed.buffer
              yield* feed.push(buf.subarray(0, bytes.copy(buf)))
              return yield* feed.end
            })
          )
    )
  )
