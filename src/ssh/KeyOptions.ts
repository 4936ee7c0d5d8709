// What the options of an authorized_keys line mean to the registry, with sshd's semantics (sshd(8)
// AUTHORIZED_KEYS FILE FORMAT). Enforced: cert-authority, principals=, from=, expiry-time=, restrict,
// no-pty/pty, command= (a forced command). Understood and nothing to do, because the registry never
// forwards ports, agents or X11 and runs no rc file: the (no-)port/agent/X11-forwarding, (no-)user-rc,
// permitopen=, permitlisten= and tunnel= options. Anything else is an option we would silently not
// enforce, so the registry refuses to start (environment=, the security-key options, typos). Ours:
// configurations="…" limits an agent key to some configurations (ConfigScope.ts; agent keys only).
import { type ConfigScope, parseConfigScope } from "../domain/ConfigScope.js"
import { compileFrom } from "./AddressMatch.js"
import type { KeyOption } from "./AuthorizedKeys.js"

export interface KeyRestrictions {
  /** The line's key is a CA: it signs user certificates and never logs in itself. */
  readonly certAuthority: boolean
  /** `principals="…"`: the certificate principals accepted instead of the user name. */
  readonly principals?: ReadonlyArray<string>
  /** `from="…"`: whether a client address may use the key. */
  readonly from?: (address: string) => boolean
  /** `expiry-time="…"`: the key is refused from this time on. */
  readonly expiresAt?: Date
  /** `command="…"`: what runs instead of whatever the client asks for. */
  readonly command?: string
  /** False under `restrict` or `no-pty` (unless a later `pty`). */
  readonly pty: boolean
  /** `configurations="…"`: the only configurations (and their blobs) an agent login may read. */
  readonly configurations?: ConfigScope
}

export const UNRESTRICTED: KeyRestrictions = { certAuthority: false, pty: true }

const NO_OPS = new Set([
  "no-port-forwarding", "port-forwarding", "no-agent-forwarding", "agent-forwarding", "no-x11-forwarding",
  "x11-forwarding", "no-user-rc", "user-rc", "permitopen", "permitlisten", "tunnel"
])

/** sshd's expiry-time: YYYYMMDD[HHMM[SS]], local time unless it ends in Z. */
export const parseExpiryTime = (text: string): Date | undefined => {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(Z?)$/i.exec(text)
  if (!m) return undefined
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? "0", m[5] ?? "0", m[6] ?? "0"].map(Number) as [number, number, number, number, number, number]
  const date = m[7] ? new Date(Date.UTC(y, mo - 1, d, h, mi, s)) : new Date(y, mo - 1, d, h, mi, s)
  // Reject dates that roll over (20250231) rather than guess.
  const back = m[7] ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes()] : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes()]
  return back.join() === [y, mo, d, h, mi].join() && s < 60 ? date : undefined
}

/** The restrictions of one line, or why the line cannot be honoured (names the option). */
export const interpretOptions = (options: ReadonlyArray<KeyOption>): KeyRestrictions | string => {
  const r: { -readonly [K in keyof KeyRestrictions]: KeyRestrictions[K] } = { ...UNRESTRICTED }
  let fromSeen = false
  for (const o of options) {
    const name = o.name.toLowerCase() // sshd matches option names case-insensitively
    const needsValue = (v: string | undefined): v is string => v !== undefined
    switch (name) {
      case "cert-authority":
        r.certAuthority = true
        break
      case "restrict":
        r.pty = false
        break
      case "no-pty":
        r.pty = false
        break
      case "pty":
        r.pty = true
        break
      case "command":
        if (!needsValue(o.value)) return `option command needs a value`
        if (r.command !== undefined) return `option command given twice`
        r.command = o.value
        break
      case "principals":
        if (!needsValue(o.value)) return `option principals needs a value`
        if (r.principals !== undefined) return `option principals given twice`
        r.principals = o.value.split(",").filter((p) => p !== "")
        break
      case "from": {
        if (!needsValue(o.value)) return `option from needs a value`
        if (fromSeen) return `option from given twice`
        fromSeen = true
        const f = compileFrom(o.value)
        if (typeof f === "string") return `option from: ${f}`
        r.from = f
        break
      }
      case "expiry-time": {
        if (!needsValue(o.value)) return `option expiry-time needs a value`
        const t = parseExpiryTime(o.value)
        if (t === undefined) return `option expiry-time: "${o.value}" is not YYYYMMDD[HHMM[SS]][Z]`
        if (r.expiresAt === undefined || t < r.expiresAt) r.expiresAt = t // the earliest wins, as in sshd
        break
      }
      case "configurations": {
        if (!needsValue(o.value)) return `option configurations needs a value`
        if (r.configurations !== undefined) return `option configurations given twice`
        const scope = parseConfigScope(o.value)
        if (typeof scope === "string") return `option ${scope}`
        r.configurations = scope
        break
      }
      default:
        if (!NO_OPS.has(name)) return `option ${JSON.stringify(o.name)} is not supported by deploy-registry`
    }
  }
  if (r.principals !== undefined && !r.certAuthority) return `option principals is only allowed with cert-authority`
  return r
}
