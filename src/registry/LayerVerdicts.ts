// addver's door: a layer that an agent would refuse is refused here, with the agent's message,
// whichever client uploaded it (deployctl, sftp put + ssh addver, deploy-from-docker). The check is
// the agent's reader (src/archive) on a worker thread, so operators are not held up while it
// inflates; at most CHECKS run at once (each holds a thread and a file), and the verdict of each
// content hash is remembered (content-addressed: it cannot change), so a layer is read once. A small
// layer is checked on the main thread instead (checkSmallLayer: a worker's start costs ~100 ms of CPU,
// that check well under 1 ms, and a bomb goes on to a worker after a few MiB of tar); at most
// SMALL_CHECKS at once (each holds the file in memory, up to INLINE_MAX bytes).
import { Context, Deferred, Effect, Exit, FiberId, Layer } from "effect"
import { type Checked, checkLayerFile, checkLayerInWorker, checkSmallLayer, type WorkerReply } from "../archive/LayerCheck.js"
import { LayerRefused, type LayerUnreadable } from "../domain/ArchiveErrors.js"
import type { Sha256 } from "../domain/Names.js"

/** Concurrent checks (worker threads). */
const CHECKS = 2
/** Concurrent checks of small layers on the main thread. */
const SMALL_CHECKS = 8

let filesRead = 0
/** Layer files this process's verdicts read to check them (tests: a verdict recorded by the upload reads none). */
export const layerFilesRead = (): number => filesRead
/** Verdicts remembered; the oldest is forgotten first (then a later addver reads the layer again). */
const REMEMBERED = 10_000

/** Why a layer was refused, without its label (each addver names its own component@version). */
type Verdict = { readonly entry: string; readonly reason: string } | undefined

export class LayerVerdicts extends Context.Tag("registry/LayerVerdicts")<
  LayerVerdicts,
  {
    /**
     * Succeeds when the layer at `file`, whose content hashes to `hash`, is one an agent unpacks;
     * otherwise fails with the agent's refusal, labelled `label` (`component@version`).
     */
    readonly check: (hash: Sha256, file: string, label: string) => Effect.Effect<void, LayerRefused | LayerUnreadable>
    /**
     * The verdict of a check already run over the bytes of content `hash` (the upload's, as they arrived:
     * UploadHash.ts); a later `check` of that hash reads nothing. "Cannot read" is no verdict: ignored.
     */
    readonly record: (hash: Sha256, verdict: WorkerReply) => Effect.Effect<void>
  }
>() {}

type Checker = (file: string) => Effect.Effect<unknown, LayerRefused | LayerUnreadable>
/** A check tried first, on the calling thread: undefined when it leaves the layer to `checker`. */
type SmallChecker = (file: string) => Effect.Effect<Checked | undefined, LayerRefused | LayerUnreadable>

export const make = (checker: Checker, small?: SmallChecker) =>
  Effect.gen(function* () {
    const permits = yield* Effect.makeSemaphore(CHECKS)
    const smallPermits = yield* Effect.makeSemaphore(SMALL_CHECKS)
    const verdicts = new Map<string, Deferred.Deferred<Verdict, LayerUnreadable>>()

    const judge = (file: string): Effect.Effect<Verdict, LayerUnreadable> =>
      Effect.suspend(() => {
        filesRead++
        return small === undefined ? Effect.succeed(undefined) : smallPermits.withPermits(1)(small(file))
      }).pipe(
        Effect.flatMap((checked) => (checked !== undefined ? Effect.void : permits.withPermits(1)(checker(file)))),
        Effect.as(undefined as Verdict),
        Effect.catchTag("LayerRefused", (e) => Effect.succeed<Verdict>({ entry: e.entry, reason: e.reason }))
      )

    const check = (hash: Sha256, file: string, label: string) =>
      Effect.gen(function* () {
        let pending = verdicts.get(hash)
        if (pending === undefined) {
          const d = yield* Deferred.make<Verdict, LayerUnreadable>()
          pending = d
          verdicts.set(hash, d)
          if (verdicts.size > REMEMBERED) verdicts.delete(verdicts.keys().next().value!)
          // A daemon: the operator who started it may disconnect; others may be waiting for it.
          yield* Effect.forkDaemon(
            judge(file).pipe(
              Effect.exit,
              Effect.flatMap((exit) => {
                if (Exit.isFailure(exit)) verdicts.delete(hash) // unreadable now (swept?): not a verdict
                return Deferred.done(d, exit)
              })
            )
          )
        }
        const verdict = yield* Deferred.await(pending)
        if (verdict !== undefined) return yield* new LayerRefused({ layer: label, entry: verdict.entry, reason: verdict.reason })
      })

    /** A verdict known now, for `hash`, unless one is known or coming already. */
    const remember = (hash: Sha256, verdict: Verdict) => {
      if (verdicts.has(hash)) return
      const d = Deferred.unsafeMake<Verdict, LayerUnreadable>(FiberId.none)
      Deferred.unsafeDone(d, Exit.succeed(verdict))
      verdicts.set(hash, d)
      if (verdicts.size > REMEMBERED) verdicts.delete(verdicts.keys().next().value!)
    }
    const record = (hash: Sha256, reply: WorkerReply) =>
      Effect.sync(() => {
        if ("ok" in reply) remember(hash, undefined)
        else if ("refused" in reply) remember(hash, { entry: reply.refused.entry, reason: reply.refused.reason })
      })

    return LayerVerdicts.of({ check, record })
  })

/** Checks on worker threads, small layers on the main thread: the registry's. */
export const LayerVerdictsLive = Layer.effect(
  LayerVerdicts,
  make(
    (file) => checkLayerInWorker(file, ""),
    (file) => checkSmallLayer(file, "")
  )
)

/** Checks on the calling thread: the same verdicts, for tests of the registry core. */
export const LayerVerdictsInline = Layer.effect(LayerVerdicts, make((file) => checkLayerFile(file, "")))
