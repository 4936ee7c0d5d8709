// A streaming exec for the operator's side: `events` (deployctl events, deployctl web) prints JSON lines
// until the client closes the channel. Each complete line goes to `onLine` as it arrives; the Effect ends
// with the exit status when the registry closes the channel (null: none sent). Interrupting it closes the
// channel. A line longer than `maxLine` bytes ends the stream (the registry never sends one).
import { Effect } from "effect"
import type { Client, ClientChannel } from "ssh2"
import { lineReader } from "../ssh/LineReader.js"
import { SshError } from "../ssh/SshError.js"

export const execLines = (client: Client, command: string, onLine: (line: string) => void, maxLine = 64 * 1024): Effect.Effect<number | null, SshError> =>
  Effect.async<number | null, SshError>((resume) => {
    let channel: ClientChannel | undefined
    let done = false
    const finish = (e: Effect.Effect<number | null, SshError>) => {
      if (done) return
      done = true
      client.removeListener("close", gone)
      resume(e)
    }
    const failed = (message: string, cause?: unknown) => finish(Effect.fail(new SshError({ reason: "Exec", message, cause })))
    const gone = () => failed("connection closed")
    client.once("close", gone)
    try {
      client.exec(command, (err, ch) => {
        if (err) return failed(`remote command failed: ${err.message}`, err)
        channel = ch
        let code: number | null = null
        ch.on("exit", (c: number | null) => {
          if (typeof c === "number") code = c
        })
        ch.on("data", lineReader(maxLine, onLine, () => {
          failed("the registry sent a line longer than the limit")
          ch.close()
        }))
        ch.stderr.on("data", () => undefined)
        ch.once("error", (e: Error) => failed(`remote command failed: ${e.message}`, e))
        ch.once("close", () => finish(Effect.succeed(code)))
      })
    } catch (cause) {
      failed(`remote command failed: ${(cause as Error).message}`, cause)
    }
    return Effect.sync(() => {
      done = true
      client.removeListener("close", gone)
      channel?.close()
    })
  })
