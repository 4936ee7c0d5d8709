// The `rollout` operator command (docs/rollouts.md): its flags, validation into a typed command, and
// its canonical argument vector. Kept beside Commands.ts, which lists it in the catalogue.
import { Duration, Either } from "effect"
import { UsageError } from "./Errors.js"
import { flag, parseGoDuration, type RawFlags } from "./Flags.js"
import { type ComponentName, componentNameProblem, type ConfigurationName, configurationNameProblem, type Sha256, sha256Problem, type Version, versionProblem } from "./Names.js"
import { MAX_CANARIES, type OnFailure } from "./Rollout.js"
import { hostNameProblem } from "./Report.js"
import { parseWaves } from "./Rollout.js"

export const rolloutFlags = [
  flag("name", "configuration name"),
  flag("component", "component to change (with -version)"),
  flag("version", "version to roll out (with -component)"),
  flag("layer", "component:version, repeat in order: the whole target state", "list"),
  flag("to", "hash of a past state of the configuration to roll out"),
  flag("waves", "cumulative wave sizes, host counts or fleet percentages (default 1,10%,50%,100%)"),
  flag("soak", "how long every host of a wave must run the target healthy before the next wave (default 60s)"),
  flag("max-failures", "failed hosts tolerated; one more stops the rollout (default 0)"),
  flag("on-failure", "revert (everyone back to the old state, default) or halt (admitted hosts keep the target)"),
  flag("canary", "hosts of the first wave, comma separated, in order"),
  flag("expect", "fail unless the configuration's current hash is this one (optimistic concurrency)"),
  flag("status", "show the rollout: waves, hosts, what it waits for, its events", "bool"),
  flag("json", "with -status: print machine-readable JSON", "bool"),
  flag("pause", "stop admitting waves (failures still stop the rollout)", "bool"),
  flag("resume", "admit waves again", "bool"),
  flag("abort", "end the rollout: everyone is served the old state again", "bool")
] as const

export type RolloutAction = "start" | "status" | "pause" | "resume" | "abort"

export type RolloutTarget =
  | { readonly _tag: "Change"; readonly component: ComponentName; readonly version: Version }
  | { readonly _tag: "Layers"; readonly layers: ReadonlyArray<{ readonly component: ComponentName; readonly version: Version }> }
  | { readonly _tag: "To"; readonly hash: Sha256 }

export interface RolloutCommand {
  readonly _tag: "rollout"
  readonly name: ConfigurationName
  readonly action: RolloutAction
  readonly json: boolean
  /** The rest only for `start`. */
  readonly target?: RolloutTarget
  readonly waves: string
  readonly soak: string
  readonly soakMs: number
  readonly maxFailures: number
  readonly onFailure: OnFailure
  readonly canary: ReadonlyArray<string>
  readonly expect?: Sha256
}

const usage = (message: string) => Either.left(new UsageError({ message }))

export const validateRollout = (
  raw: RawFlags,
  layerList: (raw: RawFlags) => Either.Either<ReadonlyArray<{ readonly component: ComponentName; readonly version: Version }>, UsageError>
): Either.Either<RolloutCommand, UsageError> =>
  Either.gen(function* () {
    const get = (k: string) => raw.strings.get(k)
    const name = get("name") ?? ""
    if (name === "") return yield* usage("name should be set")
    const np = configurationNameProblem(name)
    if (np !== undefined) return yield* usage(np)
    const actions = (["status", "pause", "resume", "abort"] as const).filter((a) => raw.bools.has(a))
    if (actions.length > 1) return yield* usage("only one of -status, -pause, -resume and -abort")
    const base = { _tag: "rollout", name: name as ConfigurationName, json: raw.bools.has("json") } as const
    const defaults = { waves: "1,10%,50%,100%", soak: "60s", soakMs: 60_000, maxFailures: 0, onFailure: "revert", canary: [] } as const
    if (actions.length === 1) return { ...base, ...defaults, action: actions[0]! }
    // Starting: exactly one way to name the target.
    const hasChange = get("component") !== undefined || get("version") !== undefined
    const hasLayers = (raw.lists.get("layer") ?? []).length > 0
    const hasTo = get("to") !== undefined
    if ([hasChange, hasLayers, hasTo].filter(Boolean).length !== 1) {
      return yield* usage("give the target with one of -component C -version V, -layer c:v …, -to HASH (or -status, -pause, -resume, -abort)")
    }
    let target: RolloutTarget
    if (hasChange) {
      const c = get("component") ?? ""
      const v = get("version") ?? ""
      if (c === "" || v === "") return yield* usage("-component and -version should both be set")
      const p = componentNameProblem(c) ?? versionProblem(v)
      if (p !== undefined) return yield* usage(p)
      target = { _tag: "Change", component: c as ComponentName, version: v as Version }
    } else if (hasLayers) {
      target = { _tag: "Layers", layers: yield* layerList(raw) }
    } else {
      const h = get("to")!.toLowerCase()
      if (sha256Problem(h) !== undefined) return yield* usage(`-to: ${sha256Problem(h)}`)
      target = { _tag: "To", hash: h as Sha256 }
    }
    const waves = get("waves") ?? defaults.waves
    const parsedWaves = parseWaves(waves)
    if (Either.isLeft(parsedWaves)) return yield* usage(parsedWaves.left)
    const soak = get("soak") ?? defaults.soak
    const soakD = parseGoDuration(soak)
    if (soakD === undefined) return yield* usage(`-soak: "${soak}" is not a duration (e.g. 60s, 5m)`)
    const mf = get("max-failures") ?? "0"
    if (!/^\d{1,6}$/.test(mf)) return yield* usage(`-max-failures: "${mf}" is not a number of hosts`)
    const onFailure = get("on-failure") ?? "revert"
    if (onFailure !== "revert" && onFailure !== "halt") return yield* usage(`-on-failure: "${onFailure}" is neither revert nor halt`)
    const canary = (get("canary") ?? "").split(",").map((h) => h.trim()).filter((h) => h !== "")
    if (canary.length > MAX_CANARIES) return yield* usage(`-canary: at most ${MAX_CANARIES} hosts`)
    for (const h of canary) {
      const p = hostNameProblem(h)
      if (p !== undefined) return yield* usage(`-canary: ${p}`)
    }
    const e = get("expect")?.toLowerCase()
    if (e !== undefined && sha256Problem(e) !== undefined) return yield* usage(`-expect: ${sha256Problem(e)}`)
    return {
      ...base, action: "start", target, waves, soak, soakMs: Math.round(Duration.toMillis(soakD)), maxFailures: Number(mf),
      onFailure, canary, ...(e !== undefined ? { expect: e as Sha256 } : {})
    } as const
  })

/** The command as a canonical argument vector (`-flag=value` form), for sending over SSH. */
export const rolloutArgv = (cmd: RolloutCommand): Array<string> => {
  const out = ["rollout", `-name=${cmd.name}`]
  if (cmd.action !== "start") return [...out, `-${cmd.action}`, ...(cmd.json ? ["-json"] : [])]
  const t = cmd.target!
  if (t._tag === "Change") out.push(`-component=${t.component}`, `-version=${t.version}`)
  else if (t._tag === "Layers") for (const l of t.layers) out.push(`-layer=${l.component}:${l.version}`)
  else out.push(`-to=${t.hash}`)
  out.push(`-waves=${cmd.waves}`, `-soak=${cmd.soak}`, `-max-failures=${cmd.maxFailures}`, `-on-failure=${cmd.onFailure}`)
  if (cmd.canary.length > 0) out.push(`-canary=${cmd.canary.join(",")}`)
  if (cmd.expect !== undefined) out.push(`-expect=${cmd.expect}`)
  return out
}
