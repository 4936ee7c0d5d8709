// `deployctl status -name CONF -wait`: a gate for CI pipelines. Asks the registry for `status -json`
// once a second on one connection until every connected host runs the configuration's current hash
// (exit 0) or one has failed on it (exit 1), then prints the status table. With no host connected it
// keeps waiting (the pipeline's own timeout bounds it).
import { Duration, Effect } from "effect"
import type { ExecResult } from "../ssh/Exec.js"

interface HostJson {
  readonly Host?: string
  readonly Kind?: string
  readonly State?: string
  readonly Connected?: boolean
}

export type Verdict = { readonly _tag: "Done"; readonly ok: boolean } | { readonly _tag: "Waiting"; readonly line: string }

/** What one `status -name N -json` answer means for the wait. */
export const verdict = (status: { readonly Hosts?: ReadonlyArray<HostJson> }): Verdict => {
  const agents = (status.Hosts ?? []).filter((h) => h.Kind === "agent" && h.Connected === true)
  if (agents.some((h) => h.State === "failed")) return { _tag: "Done", ok: false }
  const current = agents.filter((h) => h.State === "current").length
  if (agents.length > 0 && current === agents.length) return { _tag: "Done", ok: true }
  return {
    _tag: "Waiting",
    line: agents.length === 0 ? "waiting: no host is connected" : `waiting: ${current} of ${agents.length} connected host(s) current`
  }
}

export interface WaitIo {
  readonly out: (text: string) => Effect.Effect<void>
  readonly note: (text: string) => Effect.Effect<void>
}

/** Polls until a verdict, prints the last `status` (text, or JSON with -json); the exit status. */
export const waitForStatus = <E>(
  ask: (json: boolean) => Effect.Effect<ExecResult, E>,
  json: boolean,
  io: WaitIo,
  every: Duration.DurationInput = "1 second"
) =>
  Effect.gen(function* () {
    let last = ""
    for (;;) {
      const r = yield* ask(true)
      if (r.code !== 0) {
        yield* io.out(r.stdout.toString("utf8"))
        return 1
      }
      let v: Verdict
      try {
        v = verdict(JSON.parse(r.stdout.toString("utf8")) as { Hosts?: ReadonlyArray<HostJson> })
      } catch {
        yield* io.out(r.stdout.toString("utf8"))
        return 1
      }
      if (v._tag === "Done") {
        const final = json ? r : yield* ask(false)
        yield* io.out(final.stdout.toString("utf8"))
        return v.ok ? 0 : 1
      }
      if (v.line !== last) yield* io.note(`${v.line}\n`)
      last = v.line
      yield* Effect.sleep(every)
    }
  })
