// The layer check over bytes someone else reads: deployctl reads its file once and hands each chunk
// both to the upload and — moved, not copied — to a worker thread that hashes it and runs it through
// the strict reader (LayerCheck.ts). So the bytes checked and hashed are exactly the bytes sent, and a
// refusal is known while the upload is still running. At most MAX_PENDING chunks wait for the worker.
import { Deferred, Effect, Exit, type Scope } from "effect"
import { createHash } from "node:crypto"
import type { MessagePort, Worker } from "node:worker_threads"
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { startWorker } from "../fs/WorkerModule.js"
import { asLayerFailure, type Checked, readLayerFrom, type WorkerReply } from "./LayerCheck.js"

/** Chunks handed over and not yet taken up by the reader (each is the caller's read size, ~2 MiB). */
const MAX_PENDING = 4

export interface FedInput {
  readonly fed: true
  readonly label: string
  readonly hash: boolean
}

/** Main → worker: a chunk (its ArrayBuffer transferred), or the end of the file. */
type FeedMessage = { readonly buffer: ArrayBuffer; readonly length: number } | "end"
/** Worker → main, besides the final WorkerReply: one chunk was taken up. */
type Taken = { readonly taken: 1 }

/** The worker's side: reads the chunks as they come, acknowledging each, and replies once (`room` as readLayerFrom's). */
export const runFed = async (input: FedInput, port: Pick<MessagePort, "on" | "postMessage">, room?: () => undefined): Promise<WorkerReply> => {
  const hash = input.hash ? createHash("sha256") : undefined
  const queue: Array<Buffer> = []
  let ended = false
  let wake: (() => void) | undefined
  port.on("message", (m: FeedMessage) => {
    if (m === "end") ended = true
    else queue.push(Buffer.from(m.buffer, 0, m.length))
    wake?.()
  })
  async function* source(): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = queue.shift()
      if (chunk !== undefined) {
        port.postMessage({ taken: 1 } satisfies Taken)
        hash?.update(chunk)
        yield chunk
      } else if (ended) return
      else await new Promise<void>((r) => (wake = r))
    }
  }
  const ignore = { entry: () => {}, data: () => {}, entryEnd: () => {} }
  try {
    const r = await readLayerFrom(source(), input.label, ignore, room, true)
    return { ok: { entries: r.entries, bytes: r.bytes, hash: hash?.digest("hex") } }
  } catch (e) {
    const f = asLayerFailure(input.label, e)
    return f instanceof LayerRefused ? { refused: { layer: f.layer, entry: f.entry, reason: f.reason } } : { unreadable: f.reason }
  }
}

export interface LayerFeed {
  /**
   * Hands `chunk` — the next bytes of the file — to the check. Its memory moves to the worker: `chunk`
   * must be the start of an ArrayBuffer nothing else uses (Buffer.allocUnsafeSlow) and is empty
   * afterwards. Waits while MAX_PENDING chunks are untaken; fails once the check failed.
   */
  readonly push: (chunk: Buffer) => Effect.Effect<void, LayerRefused | LayerUnreadable>
  /** Ends the input; the verdict, with the sha256 of every byte pushed (when asked for). */
  readonly end: Effect.Effect<Checked, LayerRefused | LayerUnreadable>
  /** Fails as soon as the check fails, never succeeds: race work that must stop then against it. */
  readonly failed: Effect.Effect<never, LayerRefused | LayerUnreadable>
}

/** Starts a fed check of a layer named `label` on a worker thread, stopped with the scope. */
export const feedLayerCheck = (label: string, opts: { readonly hash?: boolean } = {}): Effect.Effect<LayerFeed, LayerUnreadable, Scope.Scope> =>
  Effect.gen(function* () {
    const verdict = yield* Deferred.make<Checked, LayerRefused | LayerUnreadable>()
    const input: FedInput = { fed: true, label, hash: opts.hash === true }
    const worker: Worker = yield* Effect.acquireRelease(
      Effect.try({
        try: () => startWorker(import.meta.url, "archive/LayerCheck.worker", { workerData: input }),
        catch: (e) => new LayerUnreadable({ layer: label, reason: `cannot start the check: ${(e as Error).message}` })
      }),
      (w) => Effect.promise(() => w.terminate())
    )
    let pending = 0
    let done = false // the verdict is in
    let wake: (() => void) | undefined // a push waiting for room
    const settle = (e: Exit.Exit<Checked, LayerRefused | LayerUnreadable>) => {
      done = true
      Deferred.unsafeDone(verdict, e)
      wake?.()
    }
    worker.on("message", (m: WorkerReply | Taken) => {
      if ("taken" in m) {
        pending--
        return wake?.()
      }
      if ("ok" in m) settle(Exit.succeed(m.ok))
      else if ("refused" in m) settle(Exit.fail(new LayerRefused(m.refused)))
      else settle(Exit.fail(new LayerUnreadable({ layer: label, reason: m.unreadable })))
    })
    worker.once("error", (cause) => settle(Exit.fail(new LayerUnreadable({ layer: label, reason: `checking failed: ${cause.message}` }))))
    worker.once("exit", (code) => settle(Exit.fail(new LayerUnreadable({ layer: label, reason: `checking stopped (worker exit ${code})` }))))

    const room = Effect.async<void>((resume) => {
      const check = () => {
        if (pending < MAX_PENDING || done) {
          wake = undefined
          resume(Effect.void)
        } else wake = check
      }
      check()
      return Effect.sync(() => void (wake = undefined))
    })
    const failed = Effect.flatMap(Deferred.await(verdict), () => Effect.never)

    const push = (chunk: Buffer) =>
      Effect.zipRight(
        room,
        Effect.suspend(() => {
          // Only a failure settles the verdict before the end.
          if (done) return Effect.flatMap(Deferred.await(verdict), () => Effect.fail(new LayerUnreadable({ layer: label, reason: "the check ended early" })))
          pending++
          worker.postMessage({ buffer: chunk.buffer as ArrayBuffer, length: chunk.length } satisfies FeedMessage, [chunk.buffer as ArrayBuffer])
          return Effect.void
        })
      )
    const end = Effect.suspend(() => {
      worker.postMessage("end" satisfies FeedMessage)
      return Deferred.await(verdict)
    })
    return { push, end, failed }
  })
