// One log line per connection that ended without a login: who it claimed to be, from where, and each key
// it offered with the reason it was refused. Rate-limited, because anyone on the network can make these:
// at most `burst` lines per `windowMs`; the lines dropped are counted in the next line that gets out.
import { quote } from "../domain/LogText.js"

export interface Offered {
  readonly user: string
  readonly fingerprint: string
  readonly reason: string
}

/** Keeps what one connection offered (a few attempts: a client may try many keys). */
export class Attempts {
  private readonly list: Array<Offered> = []
  private more = 0
  constructor(private readonly max = 5) {}

  add(o: Offered): void {
    const same = this.list.find((x) => x.user === o.user && x.fingerprint === o.fingerprint)
    if (same !== undefined) {
      // The signed attempt after a query: keep the more precise reason.
      if (o.reason !== same.reason) (same as { reason: string }).reason = o.reason
      return
    }
    if (this.list.length < this.max) this.list.push(o)
    else this.more++
  }

  get empty(): boolean {
    return this.list.length === 0
  }

  /** `refused login from ADDR: user "root" key SHA256:… (key not listed); …` */
  describe(from: string): string {
    const parts = this.list.map((o) => `user ${quote(o.user)} key ${o.fingerprint} (${o.reason})`)
    return `refused login from ${from}: ${parts.join("; ")}${this.more > 0 ? `; and ${this.more} more key(s)` : ""}`
  }
}

export const makeLimiter = (burst = 20, windowMs = 10_000, now: () => number = Date.now) => {
  let windowStart = now()
  let used = 0
  let dropped = 0
  /** The line to log now (with the count dropped before it), or undefined when over the limit. */
  return (line: string): string | undefined => {
    const t = now()
    if (t - windowStart >= windowMs) {
      windowStart = t
      used = 0
    }
    if (used >= burst) {
      dropped++
      return undefined
    }
    used++
    const note = dropped > 0 ? ` (${dropped} refused login(s) not logged before this one: rate limit)` : ""
    dropped = 0
    return line + note
  }
}
