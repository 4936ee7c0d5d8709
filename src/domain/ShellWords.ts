// POSIX-shell-like word splitting for exec payloads and shell lines, and the matching quoting
// that deployctl uses so names with spaces or quotes arrive intact (fault 7 of the original).
import { Either } from "effect"
import { UsageError } from "./Errors.js"

export const split = (line: string): Either.Either<Array<string>, UsageError> => {
  const words: Array<string> = []
  let cur = ""
  let inWord = false
  let i = 0
  while (i < line.length) {
    const c = line[i]!
    if (c === "'") {
      const end = line.indexOf("'", i + 1)
      if (end < 0) return Either.left(new UsageError({ message: "unterminated single quote" }))
      cur += line.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      i++
      inWord = true
      for (;;) {
        if (i >= line.length) return Either.left(new UsageError({ message: "unterminated double quote" }))
        const d = line[i]!
        if (d === '"') break
        if (d === "\\" && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1]!)) {
          cur += line[i + 1]
          i += 2
        } else {
          cur += d
          i++
        }
      }
      i++
    } else if (c === "\\") {
      if (i + 1 < line.length) cur += line[i + 1]
      inWord = true
      i += 2
    } else if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inWord) words.push(cur)
      cur = ""
      inWord = false
      i++
    } else {
      cur += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(cur)
  return Either.right(words)
}

const safe = /^[A-Za-z0-9_@%+=:,./-]+$/

export const quote = (word: string): string => (safe.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)

export const join = (words: ReadonlyArray<string>): string => words.map(quote).join(" ")
