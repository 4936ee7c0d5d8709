// The web view's side of the wire: the operator's one SSH connection to the registry (made by the same
// code as every deployctl command, OperatorClient), the JSON commands the pages read and the buttons run,
// and ONE `events` exec whose lines are shared by every browser tab (a PubSub), not one per tab.
// The registry ends connections older than its -deadline (30 min by default): a command or the events
// stream that finds the connection gone opens a new one. After the events stream restarts, subscribers
// get {"Event":"reconnected"} (they may have missed changes meanwhile and should read again).
import { Context, Duration, Effect, ExecutionStrategy, Exit, PubSub, type Queue, Schedule, Scope } from "effect"
import type { Command } from "../domain/Commands.js"
import type { UsageError } from "../domain/Errors.js"
import { execLines } from "../operator/ExecLines.js"
import type { OperatorClient } from "../operator/OperatorClient.js"
import type { ExecResult } from "../ssh/Exec.js"
import type { SshError } from "../ssh/SshError.js"

export class RegistryLink extends Context.Tag("web/RegistryLink")<
  RegistryLink,
  {
    /** Runs a catalogue command on the shared connection; its output and exit status. */
    readonly run: (command: Command) => Effect.Effect<ExecResult, SshError | UsageError>
    /** The registry's event lines (JSON text without the newline) from now on, until the scope closes. */
    readonly events: Effect.Effect<Queue.Dequeue<string>, never, Scope.Scope>
  }
>() {}

/** Commands in flight on the connection at once (the registry allows 10 sessions per connection; one is events). */
const COMMAND_SLOTS = 6

/** Event lines kept for a subscriber that has not taken them yet; older ones are dropped (a page reads again anyway). */
const QUEUED_EVENTS = 1024

export const RECONNECTED = '{"Event":"reconnected"}'

export interface LinkOptions {
  /** Opens one operator connection (scoped: it ends with the scope). */
  readonly connect: Effect.Effect<OperatorClient["Type"], SshError | UsageError, Scope.Scope>
  /** One line about the link for the operator (stderr). */
  readonly note: (line: string) => Effect.Effect<void>
}

interface Open {
  readonly op: OperatorClient["Type"]
  readonly scope: Scope.CloseableScope
  alive: boolean
}

/** Connects at once (a wrong key or address fails here, before any URL is printed). */
export const makeRegistryLink = (options: LinkOptions): Effect.Effect<RegistryLink["Type"], SshError | UsageError, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Effect.scope
    const lock = yield* Effect.makeSemaphore(1)
    let current: Open | undefined

    const open = Effect.gen(function* () {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      const op = yield* options.connect.pipe(Scope.extend(scope), Effect.onError(() => Scope.close(scope, Exit.void)))
      const entry: Open = { op, scope, alive: true }
      op.client.once("close", () => (entry.alive = false))
      current = entry
      return op
    })
    const connection = lock.withPermits(1)(
      Effect.suspend(() => {
        if (current?.alive) return Effect.succeed(current.op)
        const old = current
        current = undefined
        return Effect.zipRight(old ? Scope.close(old.scope, Exit.void) : Effect.void, open)
      })
    )
    yield* connection

    // A command that failed because the connection had just gone is tried once more on a new one.
    const slots = yield* Effect.makeSemaphore(COMMAND_SLOTS)
    const run = (command: Command) =>
      slots.withPermits(1)(
        Effect.flatMap(connection, (op) => op.run(command)).pipe(Effect.retry({ times: 1, while: () => current?.alive !== true }))
      )

    const hub = yield* Effect.acquireRelease(PubSub.sliding<string>(QUEUED_EVENTS), PubSub.shutdown)
    let started = 0
    const stream = Effect.gen(function* () {
      const op = yield* connection
      if (started++ > 0) yield* PubSub.publish(hub, RECONNECTED)
      const code = yield* execLines(op.client, "events", (line) => void Effect.runSync(PubSub.publish(hub, line)))
      yield* options.note(`the registry ended the events stream (exit status ${code ?? "none"}); reconnecting`)
    }).pipe(
      Effect.tapError((e) => options.note(`events stream: ${e.message}; retrying`)),
      Effect.ignore
    )
    // Restarted when it ends: at once the first time, then backing off to 30 s while it keeps failing.
    yield* Effect.forkScoped(
      Effect.repeat(stream, Schedule.union(Schedule.exponential("1 second"), Schedule.spaced(Duration.seconds(30))))
    )
    return { run, events: PubSub.subscribe(hub) }
  })
