// Log lines from plain callbacks go to the runtime's own loggers, with its minimum level and annotations.
import { Effect, Logger, LogLevel } from "effect"
import { describe, expect, it } from "vitest"
import { logNow } from "../../src/registry/LogNow.js"

describe("logNow", () => {
  it("writes through the installed loggers, skips what is below the minimum level, keeps annotations", async () => {
    const lines: Array<string> = []
    const capture = Logger.make(({ logLevel, message, annotations }) => {
      lines.push(`${logLevel.label} ${String(message)} ${JSON.stringify(Object.fromEntries(annotations))}`)
    })
    const log = await Effect.runPromise(
      logNow.pipe(Effect.annotateLogs("part", "ssh"), Logger.withMinimumLogLevel(LogLevel.Info), Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
    )
    log(LogLevel.Info, "logged in")
    log(LogLevel.Debug, "not shown")
    log(LogLevel.Warning, "refused")
    expect(lines).toEqual(['INFO logged in {"part":"ssh"}', 'WARN refused {"part":"ssh"}'])
  })
})
