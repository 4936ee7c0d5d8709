// Runs one operator command (an exec payload or a shell line) against Storage and renders the
// output formats of DESIGN.md. Everything goes to stdout; exit status 0 or 1.
import { Context, type Effect } from "effect"
import type { Principal } from "../domain/Principal.js"

export interface ConsoleResult {
  readonly output: string
  readonly exitCode: 0 | 1
}

export class Console extends Context.Tag("registry/Console")<
  Console,
  {
    /** `line` is shell-word split; `who` is recorded as the author of any change. */
    readonly run: (line: string, who: Principal) => Effect.Effect<ConsoleResult>
  }
>() {}
