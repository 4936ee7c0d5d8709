// The operator command `events` (docs/deployctl.md): streams OperatorEvents' lines on the exec channel's
// stdout until the client closes it, with {"Event":"ping"} every ping interval so that a client can tell
// a quiet registry from a dead link. Bounded per client like WatchSession: output waiting for a client
// that does not read beyond MAX_BUFFERED ends the session (exit status 1; the client reconnects). What
// the client sends is read and dropped.
import { Deferred, Effect, Either, Exit, Queue } from "effect"
import type { ServerChannel } from "ssh2"
import { split } from "../domain/ShellWords.js"
import type { OperatorEvents } from "./OperatorEvents.js"

const PING = '{"Event":"ping"}\n'

/** Output waiting for a client that does not read: beyond this the session is closed. */
export const MAX_BUFFERED = 1024 * 1024

/** The exec is `events` and nothing else (its -h goes to the interpreter, which prints the usage). */
export const isEventsCommand = (command: string): boolean => {
  const words = split(command)
  return Either.isRight(words) && words.right.length === 1 && words.right[0] === "events"
}

export const serveEvents = (channel: ServerChannel, events: OperatorEvents["Type"], pingMs: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const lines = yield* events.subscribe
      const ended = yield* Deferred.make<"closed" | "slow">()
      const end = (why: "closed" | "slow") => Deferred.unsafeDone(ended, Exit.succeed(why))
      const send = (text: string) => {
        if (!channel.writable) return end("closed")
        channel.write(text)
        if (channel.writableLength > MAX_BUFFERED) end("slow")
      }
      channel.on("data", () => undefined) // read and dropped: a client's input never piles up
      channel.once("end", () => end("closed"))
      channel.once("close", () => end("closed"))
      yield* Effect.forkScoped(Effect.forever(Effect.map(Queue.takeBetween(lines, 1, 1000), (ls) => send([...ls].join("")))))
      const timer = setInterval(() => send(PING), pingMs)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))
      const why = yield* Deferred.await(ended)
      if (why === "slow") yield* Effect.logInfo("closing an events stream: the client does not read")
      try {
        if (channel.writable) {
          channel.exit(why === "slow" ? 1 : 0)
          channel.end()
        }
      } catch {
        // gone already
      }
    })
  )
