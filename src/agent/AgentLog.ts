// One line per event on stderr: `<RFC 3339 UTC time with ms> <level> <message>`. `debug` lines
// only with -v. Plain sync functions as well as Effects, because the unpacker and the script
// output forwarding are plain async code.
import { Context, Effect, Layer } from "effect"
import { escapeUnprintable } from "../domain/LogText.js"

export type Level = "info" | "warn" | "error" | "debug"

export interface AgentLogService {
  readonly line: (level: Level, message: string) => void
  readonly info: (message: string) => Effect.Effect<void>
  readonly warn: (message: string) => Effect.Effect<void>
  readonly error: (message: string) => Effect.Effect<void>
  readonly debug: (message: string) => Effect.Effect<void>
}

export class AgentLog extends Context.Tag("agent/AgentLog")<AgentLog, AgentLogService>() {}

const make = (line: (level: Level, message: string) => void): AgentLogService => ({
  line,
  info: (m) => Effect.sync(() => line("info", m)),
  warn: (m) => Effect.sync(() => line("warn", m)),
  error: (m) => Effect.sync(() => line("error", m)),
  debug: (m) => Effect.sync(() => line("debug", m))
})

// Control and format characters (C0, C1, bidi, zero-width) from script output or archive names must
// not forge log lines or reach a terminal; tabs stay, as script output uses them.
const sanitize = (s: string) => s.split("\t").map(escapeUnprintable).join("\t")

export const formatLine = (now: Date, level: Level, message: string): string =>
  `${now.toISOString()} ${level} ${sanitize(message)}\n`

/** Writes to stderr; debug lines only when verbose. */
export const AgentLogStderr = (verbose: boolean) =>
  Layer.succeed(
    AgentLog,
    make((level, message) => {
      if (level === "debug" && !verbose) return
      process.stderr.write(formatLine(new Date(), level, message))
    })
  )

/** Collects lines in memory (tests): `level message`. */
export const AgentLogMemory = (lines: Array<string>) => Layer.succeed(AgentLog, make((level, message) => void lines.push(`${level} ${message}`)))
