// `status -name N -timeline`: the timeline's entries (Timeline.ts) as a table or JSON. Pure.
import { rfc3339Nano, rfc3339Seconds } from "../domain/Time.js"
import { quote } from "../domain/LogText.js"
import type { TimelineEntry } from "./Timeline.js"

export const timelineJson = (e: TimelineEntry) => ({ Host: e.host, Time: rfc3339Nano(e.time), Hash: e.hash, Outcome: e.outcome })

const printable = (s: string) => (/^[\x21-\x7e]+$/.test(s) ? s : quote(s, 300))

export const renderTimeline = (
  entries: ReadonlyArray<TimelineEntry>,
  tabwrite: (rows: ReadonlyArray<ReadonlyArray<string>>) => string,
  json: boolean
): string =>
  json ? `${JSON.stringify(entries.map(timelineJson))}\n`
    : entries.length === 0 ? "no deploys reported in the last 24 h\n"
    : tabwrite([["HOST", "TIME", "OUTCOME", "HASH"], ...entries.map((e) => [printable(e.host), rfc3339Seconds(e.time), e.outcome, e.hash.slice(0, 12) || "-"])])
