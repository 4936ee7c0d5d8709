// Client address checks as sshd makes them: `from="…"` in authorized_keys (patterns, CIDR, `!` negation;
// sshd's match_host_and_ip with UseDNS off, so host patterns are matched against the address) and a
// certificate's `source-address` critical option (CIDR list only).
import * as net from "node:net"

interface Cidr {
  readonly family: 4 | 6
  readonly bits: bigint
  readonly prefix: number
}

const v4 = (s: string): bigint => s.split(".").reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n)

const v6 = (s: string): bigint => {
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (m) {
    const n = v4(m[2]!)
    s = `${m[1]}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`
  }
  const [head, tail] = s.includes("::") ? s.split("::") as [string, string] : [s, undefined]
  const h = head === "" ? [] : head.split(":")
  const t = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t]
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n)
}

/** `::ffff:a.b.c.d` is the IPv4 client a.b.c.d (as sshd normalises it). */
export const normaliseAddress = (addr: string): string => {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  return m ? m[1]! : addr
}

const toBits = (addr: string): { family: 4 | 6; bits: bigint } | undefined => {
  const family = net.isIP(addr)
  if (family === 4) return { family, bits: v4(addr) }
  if (family === 6) return { family, bits: v6(addr.replace(/%.*$/, "")) }
  return undefined
}

/** `addr[/len]`; a string when it is not a valid network (sshd refuses host bits set beyond the mask). */
const parseCidr = (text: string): Cidr | string => {
  const [addr, len, extra] = text.split("/")
  const a = toBits(addr ?? "")
  if (a === undefined || extra !== undefined) return `"${text}" is not an address or network`
  const width = a.family === 4 ? 32 : 128
  const prefix = len === undefined ? width : /^\d{1,3}$/.test(len) ? Number(len) : NaN
  if (!(prefix >= 0 && prefix <= width)) return `"${text}" has a bad mask length`
  const hostMask = (1n << BigInt(width - prefix)) - 1n
  if ((a.bits & hostMask) !== 0n) return `"${text}" has bits set beyond its mask length`
  return { family: a.family, bits: a.bits, prefix }
}

const inCidr = (c: Cidr, addr: { family: 4 | 6; bits: bigint }) => {
  if (c.family !== addr.family) return false
  const shift = BigInt((c.family === 4 ? 32 : 128) - c.prefix)
  return addr.bits >> shift === c.bits >> shift
}

/** Shell-style `*` and `?`, case-insensitive unless `flags` says otherwise, over the whole string. */
export const glob = (pattern: string, s: string, flags = "i"): boolean => {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, flags)
  return re.test(s)
}

interface Pattern {
  readonly negated: boolean
  readonly match: (addr: string) => boolean
}

/** A checked `from=` list: a function of the client address, or the reason the list is not valid. */
export const compileFrom = (list: string): ((addr: string) => boolean) | string => {
  const patterns: Array<Pattern> = []
  for (const raw of list.split(",")) {
    const negated = raw.startsWith("!")
    const text = negated ? raw.slice(1) : raw
    if (text === "") return `empty pattern in "${list}"`
    if (text.includes("/") || net.isIP(text) !== 0) {
      const c = parseCidr(text)
      if (typeof c === "string") return c
      patterns.push({ negated, match: (a) => { const b = toBits(a); return b !== undefined && inCidr(c, b) } })
    } else {
      // Host name patterns: without DNS lookups (sshd's UseDNS no) they are matched against the address.
      patterns.push({ negated, match: (a) => glob(text, a) })
    }
  }
  return (address) => {
    const a = normaliseAddress(address)
    let ok = false
    for (const p of patterns) {
      if (!p.match(a)) continue
      if (p.negated) return false // a negated match refuses, whatever else matches
      ok = true
    }
    return ok
  }
}

/** A certificate's `source-address`: comma-separated CIDR (no patterns); a malformed list matches nothing. */
export const sourceAddressAllows = (list: string, address: string): boolean => {
  const a = toBits(normaliseAddress(address))
  if (a === undefined) return false
  let ok = false
  for (const text of list.split(",")) {
    const c = parseCidr(text)
    if (typeof c === "string") return false
    if (inCidr(c, a)) ok = true
  }
  return ok
}
