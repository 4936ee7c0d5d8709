// What one agent cycle ended with (docs/rollouts.md "On the agent"), as values a reporter can send:
// deployed, rolled back to the previous tree, failed (the previous tree failed too), unchanged, or
// held (a hash that was rolled back and is not retried yet). Also the record of such a hash that the
// state file keeps, so a restart does not retry it either.
import { Cause, Option, Schema } from "effect"
import { Rfc3339 } from "./Document.js"

/** Which step of a deploy failed: the deploy script, the health check after it, or (switching back) unpacking the previous tree. */
export const DeployStep = Schema.Literal("script", "check", "unpack")
export type DeployStep = typeof DeployStep.Type

/** How many of a failing step's last output lines are kept, and how long each may be. */
export const MAX_TAIL_LINES = 20
export const MAX_TAIL_LINE_CHARS = 1000

const Tail = Schema.Array(Schema.String.pipe(Schema.maxLength(MAX_TAIL_LINE_CHARS))).pipe(Schema.maxItems(MAX_TAIL_LINES))

/** One failed step: which, why (`exit status 1`, `timed out after 60s`), and its last output lines. */
export class StepFailure extends Schema.Class<StepFailure>("StepFailure")({
  Step: DeployStep,
  Status: Schema.String,
  Lines: Tail
}) {}

/**
 * The `Failed` key of the state file: a configuration hash whose deploy failed and was switched
 * back (`rolled-back`), or whose switch-back failed too (`failed`). Not retried until the
 * configuration changes, SIGHUP, or -retry-failed after `Time`.
 */
export class FailedRecord extends Schema.Class<FailedRecord>("FailedRecord")({
  Hash: Schema.String,
  Outcome: Schema.Literal("rolled-back", "failed"),
  Time: Rfc3339,
  Failure: StepFailure
}) {}

export class Unchanged extends Schema.TaggedClass<Unchanged>()("Unchanged", {
  hash: Schema.String
}) {}

export class Deployed extends Schema.TaggedClass<Deployed>()("Deployed", {
  hash: Schema.String,
  previous: Schema.optional(Schema.String)
}) {}

/** `hash` failed (`failure`); `restored` (the previous configuration) was deployed again and is healthy. */
export class RolledBack extends Schema.TaggedClass<RolledBack>()("RolledBack", {
  hash: Schema.String,
  restored: Schema.String,
  failure: StepFailure
}) {}

/** `hash` failed, and switching back to `previous` failed too (`restore`): things are left as they are. */
export class DeployFailed extends Schema.TaggedClass<DeployFailed>()("DeployFailed", {
  hash: Schema.String,
  previous: Schema.String,
  failure: StepFailure,
  restore: StepFailure
}) {}

/** The registry's `hash` is the one recorded as failed: not retried (`current` still runs). */
export class Held extends Schema.TaggedClass<Held>()("Held", {
  hash: Schema.String,
  current: Schema.optional(Schema.String),
  record: FailedRecord
}) {}

/** Why -trust refused a state (src/agent/TrustPolicy.ts, docs/trust.md). */
export const RefusalReason = Schema.Literal("unsigned", "bad signature", "untrusted signer", "older than current")
export type RefusalReason = typeof RefusalReason.Type

/** -trust refused the registry's `hash`: nothing downloaded or run, `current` still runs. */
export class Refused extends Schema.TaggedClass<Refused>()("Refused", {
  hash: Schema.String,
  current: Schema.optional(Schema.String),
  reason: RefusalReason,
  detail: Schema.String
}) {}

export const CycleResult = Schema.Union(Unchanged, Deployed, RolledBack, DeployFailed, Held, Refused)
export type CycleResult = typeof CycleResult.Type

/** The report outcome of a cycle result (DESIGN of issue 17's reports); a first deploy's failure is a failed cycle. */
export const outcomeOf = (r: CycleResult): "deployed" | "rolled-back" | "failed" | "refused" => {
  switch (r._tag) {
    case "Unchanged":
    case "Deployed":
      return "deployed"
    case "RolledBack":
      return "rolled-back"
    case "DeployFailed":
      return "failed"
    case "Held":
      return r.record.Outcome
    case "Refused":
      return "refused"
  }
}

/** Keeps the last `MAX_TAIL_LINES` lines, each cut to `MAX_TAIL_LINE_CHARS` (memory bounded whatever the output). */
export const makeTail = () => {
  const lines: Array<string> = []
  return {
    push: (line: string) => {
      lines.push(line.length > MAX_TAIL_LINE_CHARS ? line.slice(0, MAX_TAIL_LINE_CHARS) : line)
      if (lines.length > MAX_TAIL_LINES) lines.shift()
    },
    lines: (): ReadonlyArray<string> => [...lines]
  }
}

/** The message of a failed cycle: the typed error's one line, the defect, or an interruption from within. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  if (Cause.isInterruptedOnly(cause)) return "interrupted from within, not by a signal"
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value as { message?: unknown }
    return typeof e?.message === "string" && e.message !== "" ? e.message : String(failure.value)
  }
  return `unexpected error: ${Cause.pretty(cause).split("\n")[0]}`
}
