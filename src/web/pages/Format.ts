// Small renderings shared by the pages: short hashes, times, durations.

export const shortHash = (h: string): string => (h === "" ? "-" : h.slice(0, 12))

/** RFC 3339 to the second, UTC, as the CLI prints it ("-" when empty or unreadable). */
export const when = (t: string): string => {
  if (t === "") return "-"
  const d = new Date(t)
  return Number.isNaN(d.getTime()) ? "-" : d.toISOString().replace(/\.\d+Z$/, "Z").replace("T", " ")
}

/** "5 s ago", "3 min ago", "2 h ago", "4 d ago" relative to now ("" when unreadable). */
export const ago = (t: string, now: Date): string => {
  const ms = now.getTime() - new Date(t).getTime()
  if (t === "" || Number.isNaN(ms)) return ""
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`
  return `${Math.floor(s / 86400)} d ago`
}

/** Who made a change: the key's comment, else its user, else its fingerprint. */
export const who = (w: { readonly User: string; readonly Fingerprint: string; readonly Comment: string }): string =>
  w.Comment !== "" ? w.Comment : w.User !== "" ? w.User : w.Fingerprint
