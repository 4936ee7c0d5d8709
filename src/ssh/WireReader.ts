// Reads SSH wire encoding (RFC 4251 §5): uint32, uint64, string, and lists of strings packed in a string.
// Every read checks bounds and returns undefined past the end, so a hostile blob cannot throw.
export class WireReader {
  private pos = 0
  constructor(private readonly buf: Buffer) {}

  get offset(): number {
    return this.pos
  }

  get done(): boolean {
    return this.pos === this.buf.length
  }

  uint32(): number | undefined {
    if (this.pos + 4 > this.buf.length) return undefined
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  uint64(): bigint | undefined {
    if (this.pos + 8 > this.buf.length) return undefined
    const v = this.buf.readBigUInt64BE(this.pos)
    this.pos += 8
    return v
  }

  string(): Buffer | undefined {
    const n = this.uint32()
    if (n === undefined || this.pos + n > this.buf.length) return undefined
    const v = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return v
  }

  text(): string | undefined {
    return this.string()?.toString("utf8")
  }
}

/** The strings packed one after another in `buf` (principals, options); undefined if malformed. */
export const stringList = (buf: Buffer): Array<Buffer> | undefined => {
  const r = new WireReader(buf)
  const out: Array<Buffer> = []
  while (!r.done) {
    const s = r.string()
    if (s === undefined) return undefined
    out.push(s)
  }
  return out
}
