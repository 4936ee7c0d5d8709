// The agent session's wire format (docs/design.md "Agent sessions"): the `watch` exec an agent key may
// run, the event lines the registry streams to it, and the report lines the agent sends back. Every
// field an agent sends is bounded and validated here, once, for both sides.
import { Either, Schema } from "effect"
import { parseFlags } from "./Flags.js"
import { configurationNameProblem, Sha256 } from "./Names.js"

/** Longest line either side accepts on a watch channel (a report with its script lines fits). */
export const MAX_LINE_BYTES = 16 * 1024
/** Script output kept in a report: the last lines, each cut to a bounded length. */
export const MAX_REPORT_LINES = 20
export const MAX_REPORT_LINE_CHARS = 300
const MAX_TEXT = 500

const controlChars = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u

/** Why a host name (or agent version) is not acceptable: 1..253 bytes, no control or format characters. */
export const hostNameProblem = (s: string, what = "host"): string | undefined => {
  if (s.length === 0) return `${what} cannot be empty`
  if (Buffer.byteLength(s, "utf8") > 253) return `${what} cannot be longer than 253 bytes`
  if (controlChars.test(s)) return `${what} cannot contain control characters`
  return undefined
}

const bounded = (max: number) => Schema.String.pipe(Schema.maxLength(max))
export const HostName = Schema.String.pipe(Schema.filter((s) => hostNameProblem(s) ?? true, { identifier: "HostName" }))
const AgentVersion = Schema.String.pipe(Schema.filter((s) => hostNameProblem(s, "agent version") ?? true))
const ConfigurationName = Schema.String.pipe(Schema.filter((s) => configurationNameProblem(s) ?? true))

/**
 * What an attempt came to. `deploying` is sent when a deploy starts; the rest after it ends.
 * `refused` carries a reason (`unsigned`, `bad signature`, `untrusted signer`, `older than current`…).
 */
export const Outcome = Schema.Literal(
  "deploying",
  "deployed",
  "failed",
  "unpack-refused",
  "download-failed",
  "rolled-back",
  "refused"
)
export type Outcome = typeof Outcome.Type

/** One report: the last word of one host on one configuration. */
export class Report extends Schema.Class<Report>("Report")({
  host: HostName,
  agentVersion: AgentVersion,
  configuration: ConfigurationName,
  /** The hash the host now runs; "" before its first deploy. */
  hash: Schema.Union(Sha256, Schema.Literal("")),
  /** The hash the attempt was about (the registry's current one then). */
  target: Schema.optional(Sha256),
  outcome: Outcome,
  reason: Schema.optional(bounded(MAX_TEXT)),
  /** The deploy script's last lines (stdout and stderr, in order). */
  lines: Schema.optional(Schema.Array(bounded(MAX_REPORT_LINE_CHARS)).pipe(Schema.maxItems(MAX_REPORT_LINES))),
  /** When the attempt started, and how long it took (ms). */
  started: Schema.optional(Schema.DateTimeUtc),
  durationMs: Schema.optional(Schema.Int.pipe(Schema.between(0, 7 * 24 * 3600 * 1000)))
}) {}

/** Lines the agent sends on the channel's stdin. */
export const AgentLine = Schema.Union(
  Schema.Struct({ type: Schema.Literal("ping") }),
  Schema.Struct({ type: Schema.Literal("report"), report: Report })
)
export type AgentLine = typeof AgentLine.Type
export const decodeAgentLine = Schema.decodeUnknownEither(Schema.parseJson(AgentLine))
export const encodeAgentLine = (l: AgentLine): string => JSON.stringify(Schema.encodeSync(AgentLine)(l))

/** Lines the registry streams on stdout. `state`: the configuration's current state (first at once, then each change). */
export const WatchEvent = Schema.Union(
  Schema.Struct({ type: Schema.Literal("state"), name: Schema.String, hash: Sha256, mtime: Schema.String }),
  Schema.Struct({ type: Schema.Literal("deleted"), name: Schema.String }),
  Schema.Struct({ type: Schema.Literal("ping") }),
  /** A report line was not accepted (invalid, too large, too many); the session goes on. */
  Schema.Struct({ type: Schema.Literal("refused"), message: Schema.String })
)
export type WatchEvent = typeof WatchEvent.Type
export const decodeWatchEvent = Schema.decodeUnknownEither(Schema.parseJson(WatchEvent))

/** `watch -name CONF -host H -version V`, as exec'd by an agent key. */
export interface WatchRequest {
  readonly name: string
  readonly host: string
  readonly version: string
}

const watchFlags = [
  { name: "name", kind: "string", description: "configuration to watch" },
  { name: "host", kind: "string", description: "the agent's host name" },
  { name: "version", kind: "string", description: "the agent's version" }
] as const

/** Parses the watch command's words (after shell-word splitting); Left: one line for the agent. */
export const parseWatch = (argv: ReadonlyArray<string>): Either.Either<WatchRequest, string> => {
  if (argv[0] !== "watch") return Either.left("agent keys may only run: watch -name CONF -host HOST -version V")
  const raw = parseFlags(watchFlags, argv.slice(1))
  if (Either.isLeft(raw)) return Either.left(raw.left.message)
  const get = (n: string) => raw.right.strings.get(n) ?? ""
  const problem =
    configurationNameProblem(get("name")) ?? hostNameProblem(get("host")) ?? hostNameProblem(get("version"), "agent version")
  return problem !== undefined ? Either.left(problem) : Either.right({ name: get("name"), host: get("host"), version: get("version") })
}
