// `history -name CONF [-json]` (DESIGN.md; docs/rollouts.md "History"): every state of the configuration,
// newest first, with who signed it and, for a rollout's target, that rollout's phase and its events.
//
// Text: one tab-aligned row per state, exactly as before for states that no rollout targeted (column
// widths come from the state rows alone). A rollout's target gets a column `rollout <phase>` before
// `(current)`, and its events follow the row as lines of their own, oldest first, each starting with the
// word `rollout` (a state row starts with its time): `rollout <time> <text> (by <actor>)`.
// JSON: one object per state as before; a rollout's target has one more key, `Rollout`.
import { rfc3339Nano, rfc3339Seconds } from "../domain/Time.js"
import type { RolloutOfState } from "./Rollouts.js"
import { eventLine } from "./RolloutView.js"
import type { StateSignature } from "./Signatures.js"
import type { StateInfo } from "./StorageRows.js"

export interface HistoryInput {
  readonly states: ReadonlyArray<StateInfo>
  readonly currentId: number
  readonly signatures: ReadonlyMap<number, ReadonlyArray<StateSignature>>
  readonly rollouts: ReadonlyMap<number, RolloutOfState>
}

const stateJson = (s: StateInfo, current: boolean, sigs: ReadonlyArray<StateSignature>, rollout: RolloutOfState | undefined) => ({
  Time: rfc3339Nano(s.time),
  Hash: s.hash,
  Who: { User: s.who.user, Fingerprint: s.who.fingerprint, Comment: s.who.comment },
  Layers: s.layers.map((l) => ({ Name: l.component, Version: l.version, Hash: l.hash })),
  Current: current,
  ...(sigs.length > 0 ? { Signatures: sigs.map((g) => ({ Fingerprint: g.fingerprint, Time: rfc3339Seconds(g.signedAt) })) } : {}),
  ...(rollout !== undefined
    ? {
        Rollout: {
          Phase: rollout.phase,
          ...(rollout.reason !== undefined ? { Reason: rollout.reason } : {}),
          From: rollout.from,
          Events: rollout.events.map((e) => ({ Time: rfc3339Nano(new Date(e.time)), ...(e.actor !== "" ? { By: e.actor } : {}), Text: e.text }))
        }
      }
    : {})
})

export const historyJson = (h: HistoryInput): string =>
  `${JSON.stringify(h.states.map((s) => stateJson(s, s.id === h.currentId, h.signatures.get(s.id) ?? [], h.rollouts.get(s.id))))}\n`

export const historyText = (h: HistoryInput, tabwrite: (rows: ReadonlyArray<ReadonlyArray<string>>) => string): string => {
  const sigs = (s: StateInfo) => h.signatures.get(s.id) ?? []
  const rows = tabwrite(
    h.states.map((s) => [
      rfc3339Seconds(s.time),
      s.hash,
      s.who.label,
      s.layers.map((l) => `${l.component}:${l.version}`).join(" "),
      // Only signed states and rollout targets get these columns: other histories print as before.
      ...(sigs(s).length > 0 ? [`signed by ${sigs(s).map((g) => g.fingerprint).join(",")}`] : []),
      ...(h.rollouts.has(s.id) ? [`rollout ${h.rollouts.get(s.id)!.phase}`] : []),
      ...(s.id === h.currentId ? ["(current)"] : [])
    ])
  ).split("\n")
  return h.states
    .map((s, i) => {
      const events = h.rollouts.get(s.id)?.events ?? []
      return [rows[i]!, ...events.map((e) => `rollout ${rfc3339Seconds(new Date(e.time))} ${eventLine(e)}`)].map((l) => `${l}\n`).join("")
    })
    .join("")
}
