// A deploy is not done until it is healthy (docs/rollouts.md "On the agent"). When the deploy script
// or the health check fails and a previous configuration is deployed, the agent switches back: the
// script runs with the previous tree as the new one (OLDID/OLDROOT and NEWID/NEWROOT swapped), then
// the check. Healthy again: rolled back. Failing too: failed, and things are left as they are.
// Either way the state file keeps the previous configuration and records the failed hash, so it is
// not retried at the next poll or after a restart (RetryGate says when it is).
import { Clock, Effect } from "effect"
import type { ScriptFailed, StateFileError } from "../domain/AgentErrors.js"
import { DeployFailed, FailedRecord, RolledBack, StepFailure } from "../domain/DeployOutcome.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import { AgentConfig } from "./AgentConfig.js"
import { AgentLog } from "./AgentLog.js"
import { Cache } from "./Cache.js"
import { runSwitch } from "./HealthCheck.js"
import { StateFile } from "./StateFile.js"
import { Unpacker } from "./Unpacker.js"

export const stepFailure = (e: ScriptFailed) => new StepFailure({ Step: e.step, Status: e.status, Lines: e.lines })

const label = (l: { readonly Name: string; readonly Version: string }) => `${l.Name}@${l.Version}`

/**
 * Switches from `current` to `doc` (unpacked in `root`). Succeeds with nothing when the switch is
 * healthy (the caller records it); with RolledBack or DeployFailed when it was not. A first deploy
 * (no `current`) that fails fails the cycle as before: there is nothing to switch back to.
 */
export const deployOrSwitchBack = (doc: ConfigurationDocument, root: string, current: ConfigurationDocument | undefined) =>
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const log = yield* AgentLog
    const unpacker = yield* Unpacker
    const cache = yield* Cache
    const state = yield* StateFile
    const oldRoot = current ? unpacker.root(current.Hash) : ""
    const attempt = yield* Effect.either(runSwitch({ old: current, oldRoot, doc, newRoot: root }))
    if (attempt._tag === "Right") return undefined
    const error = attempt.left
    // Without -check the agent keeps the original's behaviour: a failed script fails the cycle and is
    // retried with backoff (a transient failure must not hold a release until someone notices).
    if (error._tag === "StateFileError" || current === undefined || cfg.check === "") {
      if (current === undefined) yield* log.info(`first deploy of ${cfg.name} failed: nothing to switch back to`)
      return yield* Effect.fail<ScriptFailed | StateFileError>(error)
    }
    const failure = stepFailure(error)
    yield* log.error(`${error.message}; switching back to ${current.Hash}`)
    // The previous tree is normally still there (it is never cleaned while deployed); its blobs are
    // kept in the cache for this, so a removed tree is unpacked again.
    const restore = yield* unpacker
      .prepare(
        current.Hash,
        current.Layers.map((l) => ({ label: label(l), file: cache.path(l.Hash) }))
      )
      .pipe(
        Effect.mapError((e) => new StepFailure({ Step: "unpack", Status: `cannot unpack ${current.Hash}: ${e.message}`, Lines: [] })),
        Effect.flatMap(({ root: previousRoot }) =>
          runSwitch({ old: doc, oldRoot: root, doc: current, newRoot: previousRoot }).pipe(
            Effect.mapError((e) => (e._tag === "ScriptFailed" ? stepFailure(e) : new StepFailure({ Step: "script", Status: e.message, Lines: [] })))
          )
        ),
        Effect.either
      )
    const now = new Date(yield* Clock.currentTimeMillis)
    const outcome = restore._tag === "Right" ? "rolled-back" : "failed"
    yield* state.write(current, new FailedRecord({ Hash: doc.Hash, Outcome: outcome, Time: now, Failure: failure }))
    const retry = `not retried until the configuration changes${cfg.retryFailed ? `, -retry-failed passes` : ""} or SIGHUP`
    if (restore._tag === "Right") {
      yield* log.warn(`rolled back configuration ${cfg.name} from ${doc.Hash} to ${current.Hash} (${failure.Step} failed: ${failure.Status}); ${retry}`)
      return new RolledBack({ hash: doc.Hash, restored: current.Hash, failure })
    }
    yield* log.error(
      `switching back configuration ${cfg.name} to ${current.Hash} failed too (${restore.left.Step}: ${restore.left.Status}); left as it is; ${doc.Hash} is ${retry}`
    )
    return new DeployFailed({ hash: doc.Hash, previous: current.Hash, failure, restore: restore.left })
  })
