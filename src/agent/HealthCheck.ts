// One switch from a configuration to another (DESIGN.md "Agent cycle", docs/rollouts.md): the deploy
// script, then the health check (-check), both with exactly the script's environment; the check
// must exit 0 within -check-timeout or its process group is killed. Used for the deploy and, with
// the roles swapped, for switching back.
import { Effect } from "effect"
import type { ScriptFailed, StateFileError } from "../domain/AgentErrors.js"
import type { ConfigurationDocument } from "../domain/Document.js"
import { AgentConfig } from "./AgentConfig.js"
import { AgentLog } from "./AgentLog.js"
import { ScriptRunner } from "./ScriptRunner.js"
import { StateFile } from "./StateFile.js"

/** Variables passed through from the agent's own environment, when set. */
export const passThrough = ["PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "LC_ALL", "SHELL"] as const

/** Exactly the script's environment (DESIGN.md): OLDROOT is empty on the first deploy (fault 3). */
export const scriptEnv = (
  parent: Readonly<Record<string, string | undefined>>,
  args: { readonly old: ConfigurationDocument | undefined; readonly oldRoot: string; readonly doc: ConfigurationDocument; readonly newRoot: string; readonly stateFile: string }
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const k of passThrough) {
    const v = parent[k]
    if (v !== undefined) env[k] = v
  }
  env.OLDID = args.old?.Hash ?? ""
  env.OLDROOT = args.old ? args.oldRoot : ""
  env.NEWID = args.doc.Hash
  env.NEWROOT = args.newRoot
  env.STATEFILE = args.stateFile
  args.doc.Layers.forEach((l, i) => {
    env[`LAYER_${i}_NAME`] = l.Name
    env[`LAYER_${i}_VERSION`] = l.Version
  })
  return env
}

/** A switch from `old` (none on the first deploy) to `doc`, unpacked in `newRoot`. */
export interface Switch {
  readonly old: ConfigurationDocument | undefined
  readonly oldRoot: string
  readonly doc: ConfigurationDocument
  readonly newRoot: string
}

/** Runs the deploy script, then the health check; either failing fails the switch with its last lines. */
export const runSwitch = (s: Switch): Effect.Effect<void, ScriptFailed | StateFileError, AgentConfig | AgentLog | ScriptRunner | StateFile> =>
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    if (cfg.script === "" && cfg.check === "") return
    const log = yield* AgentLog
    const runner = yield* ScriptRunner
    const state = yield* StateFile
    yield* Effect.scoped(
      Effect.gen(function* () {
        const stateFile = yield* state.temp(s.doc)
        const env = scriptEnv(process.env, { old: s.old, oldRoot: s.oldRoot, doc: s.doc, newRoot: s.newRoot, stateFile })
        const run = { env, configuration: cfg.name, hash: s.doc.Hash }
        if (cfg.script !== "") {
          yield* log.info(`running deploy script ${cfg.script} for ${cfg.name} ${s.doc.Hash}`)
          yield* runner.run({ ...run, script: cfg.script })
        }
        if (cfg.check !== "") {
          yield* log.info(`running health check ${cfg.check} for ${cfg.name} ${s.doc.Hash}`)
          yield* runner.run({ ...run, script: cfg.check, step: "check", timeout: cfg.checkTimeout })
          yield* log.info(`health check passed for ${cfg.name} ${s.doc.Hash}`)
        }
      })
    )
  })
