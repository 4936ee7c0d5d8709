// An exec whose stdout is newline-delimited JSON (the agents' `watch`, the operators' `events`), read by a
// raw ssh2 client: every line parsed, and a wait for the first line that matches.
import type { Client, ClientChannel } from "ssh2"

export type JsonLine = Record<string, unknown>

export interface JsonLines {
  readonly channel: ClientChannel
  readonly lines: Array<JsonLine>
  /** Resolves with the first line (from index `from`) that matches; rejects after 15 s with every line seen. */
  readonly next: (pred: (l: JsonLine) => boolean, from?: number) => Promise<JsonLine>
  /** The exit status once the channel closed (null: none was sent). */
  readonly closed: Promise<number | null>
  /** Writes one JSON line to the command's stdin. */
  readonly send: (v: unknown) => void
}

export const jsonLinesExec = (c: Client, command: string): Promise<JsonLines> =>
  new Promise((resolve, reject) =>
    c.exec(command, (err, ch) => {
      if (err) return reject(err)
      const lines: Array<JsonLine> = []
      const waiters: Array<() => void> = []
      let buf = ""
      let code: number | null = null
      ch.on("exit", (status: number | null) => (code = status))
      ch.on("data", (b: Buffer) => {
        buf += b.toString()
        let nl: number
        while ((nl = buf.indexOf("\n")) >= 0) {
          lines.push(JSON.parse(buf.slice(0, nl)) as JsonLine)
          buf = buf.slice(nl + 1)
        }
        for (const w of waiters.splice(0)) w()
      })
      let ended = false
      const closed = new Promise<number | null>((r) => ch.once("close", () => {
        ended = true
        r(code)
      }))
      const next = (pred: (l: JsonLine) => boolean, from = 0) =>
        new Promise<JsonLine>((res, rej) => {
          const timer = setTimeout(() => rej(new Error(`no matching line${ended ? ` (the channel closed, exit ${code})` : ""} in ${JSON.stringify(lines)}`)), 15_000)
          const check = () => {
            const hit = lines.slice(from).find(pred)
            if (hit) {
              clearTimeout(timer)
              return res(hit)
            }
            waiters.push(check)
          }
          check()
        })
      resolve({ channel: ch, lines, next, closed, send: (v) => ch.write(`${JSON.stringify(v)}\n`) })
    })
  )
