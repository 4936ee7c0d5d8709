// Newline-delimited text on an SSH channel (the agent session's JSON lines, both ends). A chunk may end
// inside a line or inside a UTF-8 sequence; a line longer than `max` bytes is the peer's fault and ends
// the reading (what stays buffered is bounded by `max` plus one chunk).
import { StringDecoder } from "node:string_decoder"

export const lineReader = (max: number, onLine: (line: string) => void, onTooLong: () => void) => {
  const decoder = new StringDecoder("utf8")
  let partial = ""
  let stopped = false
  return (chunk: Buffer): void => {
    if (stopped) return
    partial += decoder.write(chunk)
    let nl: number
    while ((nl = partial.indexOf("\n")) >= 0) {
      const line = partial.slice(0, nl)
      partial = partial.slice(nl + 1)
      if (Buffer.byteLength(line) > max) return void ((stopped = true), onTooLong())
      onLine(line)
      if (stopped) return
    }
    if (Buffer.byteLength(partial) > max) return void ((stopped = true), onTooLong())
  }
}
