// What the web view reads from the registry: Schema decoders for the `-json` outputs it runs over the
// operator's SSH connection (shapes: src/registry/CommandInterpreter.ts, StatusView.ts, RolloutView.ts),
// the `events` stream lines, and the data each page renders. Extra keys are ignored (the registry may
// add fields); a missing key is a decode error, not an `undefined` on the page.
import { Schema } from "effect"

/** `status -json` (no -name): one row per configuration with counts. */
export class ConfigSummary extends Schema.Class<ConfigSummary>("ConfigSummary")({
  Name: Schema.String,
  Hash: Schema.String,
  Hosts: Schema.Number,
  Current: Schema.Number,
  Behind: Schema.Number,
  Deploying: Schema.Number,
  Failed: Schema.Number,
  Offline: Schema.Number
}) {}
export const FleetStatus = Schema.Array(ConfigSummary)

export const HostState = Schema.Literal("current", "behind", "deploying", "failed", "offline")
export type HostState = typeof HostState.Type
export const hostStates: ReadonlyArray<HostState> = HostState.literals

/**
 * One host of `status -name N -json`. Host, Reason and Lines come from agent keys: untrusted text.
 * A struct, not a class: 5,000 of them are decoded per configuration page, twice as fast without classes.
 */
export const HostEntry = Schema.Struct({
  Host: Schema.String,
  Kind: Schema.Literal("agent", "poll"),
  State: HostState,
  Hash: Schema.String,
  Target: Schema.String,
  Outcome: Schema.String,
  Reason: Schema.String,
  Lines: Schema.Array(Schema.String),
  Since: Schema.String,
  LastSeen: Schema.String,
  LastReport: Schema.String,
  Connected: Schema.Boolean,
  AgentVersion: Schema.String,
  Fingerprint: Schema.String,
  Address: Schema.String,
  Started: Schema.String,
  DurationMs: Schema.Number
})
export type HostEntry = typeof HostEntry.Type

/** `status -name N -json`. */
export const ConfigurationStatus = Schema.Struct({
  Name: Schema.String,
  Hash: Schema.String,
  Hosts: Schema.Array(HostEntry)
})
export type ConfigurationStatus = typeof ConfigurationStatus.Type

export const HistoryLayer = Schema.Struct({ Name: Schema.String, Version: Schema.String, Hash: Schema.String })
export type HistoryLayer = typeof HistoryLayer.Type

/** One state of `history -name N -json` (newest first). */
export class HistoryEntry extends Schema.Class<HistoryEntry>("HistoryEntry")({
  Time: Schema.String,
  Hash: Schema.String,
  Who: Schema.Struct({ User: Schema.String, Fingerprint: Schema.String, Comment: Schema.String }),
  Layers: Schema.Array(HistoryLayer),
  Current: Schema.Boolean,
  Signatures: Schema.optional(Schema.Array(Schema.Struct({ Fingerprint: Schema.String, Time: Schema.String }))),
  /** Only on a rollout's target (src/registry/HistoryView.ts). */
  Rollout: Schema.optional(Schema.Struct({ Phase: Schema.String, Reason: Schema.optional(Schema.String), From: Schema.String }))
}) {}
export const History = Schema.Array(HistoryEntry)

export const RolloutPhase = Schema.Literal("running", "paused", "completed", "halted", "reverted", "aborted")
export type RolloutPhase = typeof RolloutPhase.Type

/** `rollout -name N -status -json` (the registry answers exit 1 when the configuration never had one). */
export class RolloutStatus extends Schema.Class<RolloutStatus>("RolloutStatus")({
  Name: Schema.String,
  From: Schema.String,
  To: Schema.String,
  Phase: RolloutPhase,
  Reason: Schema.optional(Schema.String),
  Started: Schema.String,
  StartedBy: Schema.String,
  Settings: Schema.Struct({
    Waves: Schema.String,
    SoakMs: Schema.Number,
    MaxFailures: Schema.Number,
    OnFailure: Schema.String,
    Canary: Schema.Array(Schema.String)
  }),
  Waves: Schema.Array(
    Schema.Struct({
      Wave: Schema.Number,
      Admitted: Schema.optional(Schema.String),
      Hosts: Schema.Array(Schema.Struct({ Host: Schema.String, State: Schema.String, SoakLeftMs: Schema.optional(Schema.Number) }))
    })
  ),
  WaitingFor: Schema.Array(Schema.String),
  Offline: Schema.Array(Schema.String),
  Failed: Schema.Array(Schema.String),
  Events: Schema.Array(Schema.Struct({ Time: Schema.String, Text: Schema.String }))
}) {}

export const TimelineOutcome = Schema.Literal("deployed", "rolled-back", "failed", "refused", "deploying")
export type TimelineOutcome = typeof TimelineOutcome.Type
export const timelineOutcomes: ReadonlyArray<TimelineOutcome> = TimelineOutcome.literals

/** One deploy outcome of `status -name N -timeline -json` (the last 24 h). */
export class TimelineEntry extends Schema.Class<TimelineEntry>("TimelineEntry")({
  Host: Schema.String,
  Time: Schema.String,
  Hash: Schema.String,
  Outcome: TimelineOutcome
}) {}
export const Timeline = Schema.Array(TimelineEntry)

/** One line of the registry's `events` exec. */
export const RegistryEvent = Schema.Union(
  Schema.Struct({ Event: Schema.Literal("state"), Name: Schema.String, Hash: Schema.String, Time: Schema.String }),
  Schema.Struct({ Event: Schema.Literal("deleted"), Name: Schema.String }),
  Schema.Struct({ Event: Schema.Literal("served"), Name: Schema.String }),
  Schema.Struct({ Event: Schema.Literal("signed"), Name: Schema.String, Hash: Schema.String }),
  /** Events may have been missed (replicas: the registry's LISTEN connection came back): read everything again. */
  Schema.Struct({ Event: Schema.Literal("resync") }),
  Schema.Struct({ Event: Schema.Literal("host"), Name: Schema.String, Host: Schema.String, State: Schema.String, Hash: Schema.String }),
  Schema.Struct({ Event: Schema.Literal("ping") }),
  /** Not the registry's: deployctl web's own, after its connection to the registry came back (RegistryLink.ts). */
  Schema.Struct({ Event: Schema.Literal("reconnected") })
)
export type RegistryEvent = typeof RegistryEvent.Type

export const decodeFleetStatus = Schema.decodeUnknown(Schema.parseJson(FleetStatus))
export const decodeConfigurationStatus = Schema.decodeUnknown(Schema.parseJson(ConfigurationStatus))
export const decodeHistory = Schema.decodeUnknown(Schema.parseJson(History))
export const decodeRolloutStatus = Schema.decodeUnknown(Schema.parseJson(RolloutStatus))
export const decodeTimeline = Schema.decodeUnknown(Schema.parseJson(Timeline))
export const decodeRegistryEvent = Schema.decodeUnknown(Schema.parseJson(RegistryEvent))

// ---- What each page renders (the server gathers it; pages are pure functions of it) ----

/** Fleet: one row per configuration, its newest history entry (last change) and its rollout if any. */
export interface FleetData {
  readonly configurations: ReadonlyArray<{
    readonly summary: ConfigSummary
    readonly last: HistoryEntry | undefined
    readonly rollout: RolloutStatus | undefined
  }>
}

export interface ConfigurationData {
  readonly status: ConfigurationStatus
  readonly history: ReadonlyArray<HistoryEntry>
  readonly rollout: RolloutStatus | undefined
}

export interface TimelineData {
  readonly name: string
  readonly entries: ReadonlyArray<TimelineEntry>
}

/**
 * Given to every page. `query`: the request's query string (state filter, sort, page). `fragment`: the
 * client asked `?fragment=1` (after a live event): only the contents of `<main>` are rendered, which the
 * client swaps in. `notice`: a message to show at the top (e.g. a refused rollback, answered 409).
 */
export interface PageContext {
  readonly csrf: string
  readonly now: Date
  readonly query: URLSearchParams
  readonly fragment?: boolean
  readonly notice?: { readonly kind: "error" | "ok"; readonly text: string }
}
