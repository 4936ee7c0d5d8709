// A staged rollout of one configuration change (docs/rollouts.md "On the registry"): its settings,
// its waves, its phase, what hosts report, the events that move it and what each step changed.
// Plain data (times are epoch milliseconds), so a rollout can be stored and resumed after a restart;
// the transitions are in src/registry/RolloutPlan.ts.
import { Either, Schema } from "effect"

/** Most waves a rollout may have, and most hosts named with -canary. */
export const MAX_WAVES = 100
export const MAX_CANARIES = 100

/** One `-waves` entry: a number of hosts, or a percentage of the fleet (both cumulative). */
export const WaveSize = Schema.Union(
  Schema.TaggedStruct("Hosts", { count: Schema.Int.pipe(Schema.positive()) }),
  Schema.TaggedStruct("Percent", { percent: Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(100)) })
)
export type WaveSize = typeof WaveSize.Type

export const OnFailure = Schema.Literal("revert", "halt")
export type OnFailure = typeof OnFailure.Type

export class RolloutSpec extends Schema.Class<RolloutSpec>("RolloutSpec")({
  configuration: Schema.String,
  /** The state everyone had before (`old`), and the target. */
  from: Schema.String,
  to: Schema.String,
  waves: Schema.NonEmptyArray(WaveSize).pipe(Schema.maxItems(MAX_WAVES)),
  /** How long every host of a wave must report the target healthy before the next wave. */
  soakMs: Schema.Int.pipe(Schema.nonNegative()),
  maxFailures: Schema.Int.pipe(Schema.nonNegative()),
  onFailure: OnFailure,
  canary: Schema.Array(Schema.String).pipe(Schema.maxItems(MAX_CANARIES))
}) {}

/**
 * running: waves are admitted as they become healthy. paused: no wave is admitted (failures still
 * halt). completed: every wave admitted and healthy, everyone gets the target. halted (-on-failure
 * halt): admitted hosts keep the target, nobody else gets it. reverted (-on-failure revert) and
 * aborted: everyone gets the old state again.
 */
export const RolloutPhase = Schema.Literal("running", "paused", "completed", "halted", "reverted", "aborted")
export type RolloutPhase = typeof RolloutPhase.Type

export const isFinished = (p: RolloutPhase): boolean => p !== "running" && p !== "paused"

export class Wave extends Schema.Class<Wave>("Wave")({
  hosts: Schema.Array(Schema.String),
  admittedAt: Schema.optional(Schema.Number)
}) {}

export class RolloutState extends Schema.Class<RolloutState>("RolloutState")({
  spec: RolloutSpec,
  startedAt: Schema.Number,
  phase: RolloutPhase,
  /** In wave order; hosts that appear during the rollout join the last wave. */
  waves: Schema.Array(Wave),
  /** Hosts counted against -max-failures (each once). */
  failed: Schema.Array(Schema.String),
  /** Why the rollout stopped (halted, reverted, aborted). */
  reason: Schema.optional(Schema.String)
}) {}

/**
 * What the registry knows about one host of the configuration (from its agent session and reports):
 * online or not, the hash it runs, and its last outcome, for which hash, and since when the host has
 * reported `running` healthy.
 */
export class HostView extends Schema.Class<HostView>("HostView")({
  host: Schema.String,
  online: Schema.Boolean,
  running: Schema.optional(Schema.String),
  attempted: Schema.optional(Schema.String),
  /** refused: an agent with -trust refused the hash (unsigned, …): not a failure, the wave waits for a signature. */
  outcome: Schema.optional(Schema.Literal("deployed", "failed", "rolled-back", "refused")),
  healthySince: Schema.optional(Schema.Number)
}) {}

/** A look at the fleet at `now`: admits waves, counts failures, adds hosts seen for the first time. */
export class Tick extends Schema.TaggedClass<Tick>()("Tick", { now: Schema.Number, hosts: Schema.Array(HostView) }) {}
export class Pause extends Schema.TaggedClass<Pause>()("Pause", { now: Schema.Number }) {}
export class Resume extends Schema.TaggedClass<Resume>()("Resume", { now: Schema.Number }) {}
export class Abort extends Schema.TaggedClass<Abort>()("Abort", { now: Schema.Number, by: Schema.String }) {}
export const RolloutEvent = Schema.Union(Tick, Pause, Resume, Abort)
export type RolloutEvent = typeof RolloutEvent.Type

/** What a step changed, for `history`: one entry each. */
export const RolloutChange = Schema.Union(
  Schema.TaggedStruct("WaveAdmitted", { wave: Schema.Int, hosts: Schema.Array(Schema.String), at: Schema.Number }),
  Schema.TaggedStruct("HostFailed", { host: Schema.String, outcome: Schema.String, at: Schema.Number }),
  Schema.TaggedStruct("PhaseChanged", { phase: RolloutPhase, reason: Schema.optional(Schema.String), at: Schema.Number })
)
export type RolloutChange = typeof RolloutChange.Type

/** One host's place in the rollout, for `rollout -status`. */
export const HostRolloutState = Schema.Literal("waiting", "updating", "refused", "soaking", "healthy", "failed", "offline", "reverted")
export type HostRolloutState = typeof HostRolloutState.Type

/** Host names written into one event or reason text at most: a rollout of 5,000 hosts keeps its texts short. */
export const MAX_NAMED_HOSTS = 10

/** `a, b, c` or, past MAX_NAMED_HOSTS, `a, b, …, j and 4990 more` (-status lists every host). */
export const hostList = (hosts: ReadonlyArray<string>): string =>
  hosts.length <= MAX_NAMED_HOSTS ? hosts.join(", ") : `${hosts.slice(0, MAX_NAMED_HOSTS).join(", ")} and ${hosts.length - MAX_NAMED_HOSTS} more`

/** `-waves 1,10%,50%,100%`: cumulative host counts or fleet percentages, in rollout order. */
export const parseWaves = (s: string): Either.Either<readonly [WaveSize, ...Array<WaveSize>], string> => {
  const parts = s.split(",").map((p) => p.trim())
  if (parts.length > MAX_WAVES) return Either.left(`-waves: at most ${MAX_WAVES} waves`)
  const sizes: Array<WaveSize> = []
  for (const p of parts) {
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(p)
    if (pct !== null) {
      const percent = Number(pct[1])
      if (!(percent > 0 && percent <= 100)) return Either.left(`-waves: "${p}" is not a percentage in (0, 100]`)
      sizes.push({ _tag: "Percent", percent })
    } else if (/^\d+$/.test(p) && Number(p) > 0 && Number.isSafeInteger(Number(p))) {
      sizes.push({ _tag: "Hosts", count: Number(p) })
    } else return Either.left(`-waves: "${p}" is neither a host count nor a percentage (e.g. 1,10%,50%,100%)`)
  }
  return Either.right(sizes as unknown as readonly [WaveSize, ...Array<WaveSize>])
}
