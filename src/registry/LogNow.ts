// Log lines from plain callbacks (the registry's connection handling, SshServer.ts): what Effect.log does
// inside a fiber (the runtime's loggers, minimum level, spans and annotations), without making a fiber
// per line. Running Effect.logInfo through Runtime.runSync was a tenth of a handshake's CPU.
import { Cause, Effect, FiberRef, FiberRefs, LogLevel } from "effect"

export type LogNow = (level: LogLevel.LogLevel, message: string) => void

/** A logger bound to the current fiber's loggers and log settings (read once, here). */
export const logNow: Effect.Effect<LogNow> = Effect.map(Effect.all([Effect.getFiberRefs, Effect.fiberId]), ([refs, fiberId]) => {
  const loggers = FiberRefs.getOrDefault(refs, FiberRef.currentLoggers)
  const minimum = FiberRefs.getOrDefault(refs, FiberRef.currentMinimumLogLevel)
  const spans = FiberRefs.getOrDefault(refs, FiberRef.currentLogSpan)
  const annotations = FiberRefs.getOrDefault(refs, FiberRef.currentLogAnnotations)
  return (logLevel, message) => {
    if (LogLevel.greaterThan(minimum, logLevel)) return
    const date = new Date()
    for (const logger of loggers) logger.log({ fiberId, logLevel, message, cause: Cause.empty, context: refs, spans, annotations, date })
  }
})
