// What each page shows, read from the registry with its existing JSON commands over the RegistryLink
// (status -json, status -name N -json, history -name N -json, rollout -name N -status -json,
// status -name N -timeline -json), decoded with WebModel's schemas, and the commands the buttons run.
// A registry refusal (exit 1) keeps its one-line message for the page.
import { Data, Effect, type ParseResult } from "effect"
import { type Command, type CommandName, validate } from "../domain/Commands.js"
import type { UsageError } from "../domain/Errors.js"
import type { ExecResult } from "../ssh/Exec.js"
import type { SshError } from "../ssh/SshError.js"
import type { RegistryLink } from "./RegistryLink.js"
import {
  type ConfigurationData, decodeConfigurationStatus, decodeFleetStatus, decodeHistory, decodeRolloutStatus, decodeTimeline,
  type FleetData, type HistoryEntry, type RolloutStatus, type TimelineData
} from "./WebModel.js"

/** The registry said no (its message), or answered what we cannot read. */
export class Refused extends Data.TaggedError("Refused")<{ readonly message: string; readonly stale: boolean }> {}
export class Unreadable extends Data.TaggedError("Unreadable")<{ readonly message: string }> {}

export type DataError = Refused | Unreadable | SshError | UsageError

/** Configurations whose last change and rollout the fleet page reads (each costs two commands). */
export const FLEET_DETAIL = 200
/** History states read for the configuration page (its table shows 100; one more for the last "what changed"). */
const HISTORY_STATES = 101

/** A catalogue command from flags, validated as deployctl validates it. */
export const command = (name: CommandName, strings: Record<string, string>, bools: ReadonlyArray<string> = []) =>
  validate(name, { strings: new Map(Object.entries(strings)), bools: new Set(bools), lists: new Map(), help: false })

const text = (r: ExecResult) => r.stdout.toString("utf8").trim()

/** Runs a command; exit 0 gives its output, anything else a Refused with the registry's message. */
export const ask = (link: RegistryLink["Type"], name: CommandName, strings: Record<string, string>, bools: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const cmd: Command = yield* command(name, strings, bools)
    const r = yield* link.run(cmd)
    if (r.code !== 0) {
      const message = text(r).split("\n")[0] || `the registry answered exit status ${r.code ?? "none"}`
      return yield* new Refused({ message, stale: /not the expected/.test(message) })
    }
    return r.stdout.toString("utf8")
  })

const decoded = <A>(decode: (s: string) => Effect.Effect<A, ParseResult.ParseError>) => (s: string) =>
  Effect.mapError(decode(s), (e) => new Unreadable({ message: `the registry answered something this page cannot read: ${e.message.split("\n")[0]}` }))

/** The configuration's rollout (newest, live or over), or undefined when it never had one. */
const rolloutOf = (link: RegistryLink["Type"], name: string): Effect.Effect<RolloutStatus | undefined, DataError> =>
  ask(link, "rollout", { name }, ["status", "json"]).pipe(
    Effect.flatMap(decoded(decodeRolloutStatus)),
    Effect.catchTag("Refused", () => Effect.succeed(undefined))
  )

/**
 * Each configuration's last change and rollout for the fleet page, kept between page loads: the fleet
 * page is read again after every event, and reading these is two commands per configuration. An event
 * drops what it may have changed (see `forget`); a new events stream drops everything.
 */
export const makeFleetCache = () => {
  const details = new Map<string, { readonly last: HistoryEntry | undefined; readonly rollout: RolloutStatus | undefined }>()
  /** Applies one `events` line. */
  const forget = (line: string) => {
    let e: { Event?: unknown; Name?: unknown }
    try {
      e = JSON.parse(line) as typeof e
    } catch {
      return
    }
    if (e.Event === "reconnected" || e.Event === "resync") return details.clear()
    if (typeof e.Name !== "string") return
    const d = details.get(e.Name)
    // A host's report moves a running rollout's progress; otherwise only states and steps change these.
    if (e.Event !== "host" || (d?.rollout !== undefined && live.has(d.rollout.Phase))) details.delete(e.Name)
  }
  return { details, forget }
}
export type FleetCache = ReturnType<typeof makeFleetCache>
const live = new Set(["running", "paused", "halted"])

export const fleetData = (link: RegistryLink["Type"], cache: FleetCache): Effect.Effect<FleetData, DataError> =>
  Effect.gen(function* () {
    const summaries = yield* Effect.flatMap(ask(link, "status", {}, ["json"]), decoded(decodeFleetStatus))
    const configurations = yield* Effect.forEach(
      summaries,
      (summary, i) => {
        const known = cache.details.get(summary.Name)
        if (known !== undefined) return Effect.succeed({ summary, ...known })
        if (i >= FLEET_DETAIL) return Effect.succeed({ summary, last: undefined, rollout: undefined })
        return Effect.all({
          last: ask(link, "history", { name: summary.Name, n: "1" }, ["json"]).pipe(
            Effect.flatMap(decoded(decodeHistory)),
            Effect.map((h) => h[0]),
            Effect.catchTag("Refused", () => Effect.succeed(undefined)) // deleted meanwhile
          ),
          rollout: rolloutOf(link, summary.Name)
        }).pipe(
          Effect.tap((d) => Effect.sync(() => cache.details.set(summary.Name, d))),
          Effect.map((d) => ({ summary, ...d }))
        )
      },
      { concurrency: 4 }
    )
    // Configurations gone from the registry leave the cache too.
    const names = new Set(summaries.map((c) => c.Name))
    for (const n of cache.details.keys()) if (!names.has(n)) cache.details.delete(n)
    return { configurations }
  })

export const configurationData = (link: RegistryLink["Type"], name: string): Effect.Effect<ConfigurationData, DataError> =>
  Effect.all(
    {
      status: Effect.flatMap(ask(link, "status", { name }, ["json"]), decoded(decodeConfigurationStatus)),
      history: Effect.flatMap(ask(link, "history", { name, n: String(HISTORY_STATES) }, ["json"]), decoded(decodeHistory)),
      rollout: rolloutOf(link, name)
    },
    { concurrency: 3 }
  )

export const timelineData = (link: RegistryLink["Type"], name: string): Effect.Effect<TimelineData, DataError> =>
  Effect.map(Effect.flatMap(ask(link, "status", { name }, ["timeline", "json"]), decoded(decodeTimeline)), (entries) => ({ name, entries }))

/** A button's form, checked before anything is sent: Left is the message for the page. */
export type Action =
  | { readonly _tag: "rollback"; readonly name: string; readonly hash: string; readonly expect: string }
  | { readonly _tag: "rollout"; readonly name: string; readonly step: "pause" | "resume" | "abort" }

export const runAction = (link: RegistryLink["Type"], a: Action): Effect.Effect<string, DataError> =>
  a._tag === "rollback"
    ? ask(link, "rollback", { name: a.name, to: a.hash, expect: a.expect })
    : ask(link, "rollout", { name: a.name }, [a.step])
