// Run one command over an SSH `exec` channel of a connected ssh2 Client, as an Effect.
//
//   exec(client, "showconf -name=p1")  // Effect<ExecResult, SshError>
//
// stdout and stderr are collected whole (operator commands print little); the result carries the
// remote exit code (null when the server sent none, e.g. it closed the channel or sent a signal).
// Interrupting the Effect closes the channel. A non-zero exit is NOT a failure here: the caller
// decides (deployctl passes the output and status through unchanged).
import { Effect } from "effect"
import type { Client, ClientChannel } from "ssh2"
import { SshError } from "./SshError.js"

export interface ExecResult {
  readonly stdout: Buffer
  readonly stderr: Buffer
  /** Exit status the server reported, or null if it reported none. */
  readonly code: number | null
  /** Signal name when the server reported the command was killed by one. */
  readonly signal?: string
}

export interface ExecOptions {
  /** Bytes written to the command's stdin before EOF (default: EOF at once). */
  readonly stdin?: Uint8Array | string
}

export const exec = (client: Client, command: string, options: ExecOptions = {}): Effect.Effect<ExecResult, SshError> =>
  Effect.async<ExecResult, SshError>((resume) => {
    let channel: ClientChannel | undefined
    let done = false
    const finish = (effect: Effect.Effect<ExecResult, SshError>) => {
      if (done) return
      done = true
      client.removeListener("close", onClientGone)
      resume(effect)
    }
    const failed = (cause: unknown) =>
      finish(
        Effect.fail(
          new SshError({ reason: "Exec", message: `remote command failed: ${(cause as Error)?.message ?? String(cause)}`, cause })
        )
      )
    // The client may end underneath us (server drops the connection): report, don't hang.
    const onClientGone = () => failed(new Error("connection closed"))
    client.once("close", onClientGone)
    try {
      client.exec(command, (err, ch) => {
        if (err) return failed(err)
        channel = ch
        const out: Array<Buffer> = []
        const errs: Array<Buffer> = []
        let code: number | null = null
        let signal: string | undefined
        ch.on("data", (d: Buffer) => out.push(d))
        ch.stderr.on("data", (d: Buffer) => errs.push(d))
        ch.on("exit", (c: number | null, sig?: string) => {
          if (typeof c === "number") code = c
          if (typeof sig === "string") signal = sig
        })
        ch.once("close", () =>
          finish(
            Effect.succeed({
              stdout: Buffer.concat(out),
              stderr: Buffer.concat(errs),
              code,
              ...(signal !== undefined ? { signal } : {})
            })
          )
        )
        ch.once("error", failed)
        if (options.stdin !== undefined) ch.end(options.stdin)
        else ch.end()
      })
    } catch (cause) {
      failed(cause)
    }
    return Effect.sync(() => {
      done = true
      client.removeListener("close", onClientGone)
      channel?.close()
    })
  })
