// Decoding of one 512-byte tar header block and of PAX extended-header records, strictly: a field
// that two readers could read differently is a refusal (`Bad`), never a guess. GNU tar 1.34 is the
// reference for what a field means.

export const BLOCK = 512

/** A malformed field; the parser turns it into a LayerRefused naming the entry. */
export class Bad extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** UTF-8 text, or Bad: two byte strings must never decode to one name (U+FFFD). */
export const text = (bytes: Uint8Array, what: string): string => {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new Bad(`${what} is not valid UTF-8`)
  }
}

/** A NUL-terminated field (the whole field when it has no NUL). */
export const cstring = (b: Buffer, off: number, len: number): Buffer => {
  const end = b.indexOf(0, off)
  return b.subarray(off, end < 0 || end > off + len ? off + len : end)
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER // 2^53 - 1

/**
 * A numeric header field: octal (leading spaces, then digits, then only NULs/spaces; all-NUL is 0,
 * as GNU tar reads it) or GNU base-256 (first byte 0x80, or 0xff for negative). Values beyond
 * 2^53 cannot be held exactly and are refused.
 */
export const number = (b: Buffer, off: number, len: number, what: string, negative = false): number => {
  const first = b[off]!
  if (first === 0x80 || first === 0xff) {
    const neg = first === 0xff
    let v = 0
    for (let i = off + 1; i < off + len; i++) {
      v = v * 256 + (neg ? 255 - b[i]! : b[i]!)
      if (v > MAX_SAFE) throw new Bad(`${what} is beyond 2^53`)
    }
    if (!neg) return v
    if (!negative) throw new Bad(`${what} is negative`)
    return -(v + 1)
  }
  if (first & 0x80) throw new Bad(`${what} is not a number`)
  let i = off
  const end = off + len
  while (i < end && b[i] === 0x20) i++
  let v = 0
  let digits = 0
  for (; i < end && b[i]! >= 0x30 && b[i]! <= 0x37; i++, digits++) v = v * 8 + (b[i]! - 0x30)
  for (; i < end; i++) if (b[i] !== 0 && b[i] !== 0x20) throw new Bad(`${what} is not an octal number`)
  if (digits === 0 && b[off] === 0x20) throw new Bad(`${what} is blank`)
  if (v > MAX_SAFE) throw new Bad(`${what} is beyond 2^53`)
  return v
}

/** GNU tar accepts the checksum computed over unsigned or over signed bytes. */
export const checksumOk = (b: Buffer): boolean => {
  const recorded = number(b, 148, 8, "header checksum")
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i]!
    unsigned += c
    signed += c > 127 ? c - 256 : c
  }
  return recorded === unsigned || recorded === signed
}

export const isZero = (b: Uint8Array, from = 0, to = b.length): boolean => {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false
  return true
}

export type Format = "ustar" | "gnu"

/** ustar (POSIX, with a name prefix) or GNU (`ustar  \0`, no prefix); anything else is refused. */
export const format = (b: Buffer): Format => {
  const magic = b.toString("latin1", 257, 265)
  if (magic.startsWith("ustar\0")) return "ustar"
  if (magic === "ustar  \0") return "gnu"
  throw new Bad("not a ustar or GNU tar header")
}

/** One `<len> <key>=<value>\n` record of a PAX header, value as raw bytes. */
export interface PaxRecord {
  readonly key: string
  readonly value: Buffer
}

/** Walks PAX records by their length prefix (never by newlines). */
export const paxRecords = (body: Buffer): Array<PaxRecord> => {
  const out: Array<PaxRecord> = []
  let pos = 0
  while (pos < body.length) {
    let i = pos
    let len = 0
    while (i < body.length && body[i]! >= 0x30 && body[i]! <= 0x39 && i - pos < 8) len = len * 10 + (body[i++]! - 0x30)
    if (i === pos || body[pos] === 0x30 || body[i] !== 0x20) throw new Bad("malformed PAX record (length)")
    const end = pos + len
    if (end > body.length || end <= i + 1) throw new Bad("malformed PAX record (length beyond the header)")
    if (body[end - 1] !== 0x0a) throw new Bad("malformed PAX record (no newline at its end)")
    const eq = body.indexOf(0x3d, i + 1)
    if (eq < 0 || eq >= end - 1) throw new Bad("malformed PAX record (no =)")
    const key = body.toString("latin1", i + 1, eq)
    if (key === "" || !/^[\x21-\x7e]+$/.test(key)) throw new Bad(`malformed PAX record (key ${JSON.stringify(key)})`)
    const value = body.subarray(eq + 1, end - 1)
    if (value.includes(0x0a)) throw new Bad(`PAX ${key} holds a newline`)
    if (value.includes(0)) throw new Bad(`PAX ${key} holds a NUL byte`)
    out.push({ key, value })
    pos = end
  }
  return out
}

/** PAX decimal integer (size, uid, gid). */
export const paxInteger = (v: string, key: string, max = MAX_SAFE): number => {
  if (!/^[0-9]{1,20}$/.test(v)) throw new Bad(`PAX ${key} is not a decimal number`)
  const n = Number(v)
  if (n > max) throw new Bad(max === MAX_SAFE ? `PAX ${key} is beyond 2^53` : `PAX ${key} is out of range`)
  return n
}

/** PAX time: `[-]seconds[.fraction]` with at most 9 fraction digits (nanoseconds). */
export const paxTime = (v: string, key: string): number => {
  const m = /^(-?)([0-9]{1,20})(?:\.([0-9]{1,9}))?$/.exec(v)
  if (m === null) throw new Bad(`PAX ${key} is not a time`)
  const secs = Number(m[2])
  if (secs > MAX_SAFE) throw new Bad(`PAX ${key} is beyond 2^53`)
  const t = secs + (m[3] === undefined ? 0 : Number(`0.${m[3]}`))
  return m[1] === "-" ? -t : t
}
