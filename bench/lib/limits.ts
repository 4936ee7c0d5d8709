// What one core can do, measured in the same run as the transfers: the negotiated cipher through ssh2's
// own packet cipher (packet by packet, as SSH frames them) and sha256 (which the registry and the agent
// compute over every byte). A transfer whose work sits on one core cannot beat the slower of the two:
// put and get are printed as a fraction of it, which says how much of the gap is ours to close.
import { execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { row, type Row } from "./report.js"
import { mapStat, summarize, type Stat } from "./stats.js"

const MiB = 2 ** 20
/** SSH packets carry at most 32 KiB of channel data (ssh2 and OpenSSH both send that much per packet). */
const PACKET = 32 * 1024

const timeIt = (bytes: number, fn: () => void): number => {
  const t0 = process.hrtime.bigint()
  fn()
  return bytes / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9)
}

interface Ssh2Crypto {
  readonly CIPHER_INFO: Record<string, { readonly keyLen: number; readonly ivLen: number } | undefined>
  readonly MAC_INFO: Record<string, unknown>
  readonly createCipher: (config: unknown) => { allocPacket(payloadLen: number): Buffer; encrypt(packet: Buffer): void }
}
// ssh2's own packet cipher (its native binding where built), exactly what the transfers run through.
const ssh2Crypto = createRequire(import.meta.url)("ssh2/lib/protocol/crypto.js") as Ssh2Crypto

/** Packet encryption throughput (MB/s, 10^6 bytes like the transfer rows) of `cipher` over `total` bytes. */
const cipherOnce = (cipher: string, total: number): number | undefined => {
  const info = ssh2Crypto.CIPHER_INFO[cipher]
  if (info === undefined) return undefined
  const c = ssh2Crypto.createCipher({
    outbound: {
      onWrite: () => undefined,
      cipherInfo: info,
      cipherKey: randomBytes(info.keyLen),
      cipherIV: randomBytes(info.ivLen),
      seqno: 0,
      // Used only by the non-AEAD ciphers (the -ctr family), as negotiated by default.
      macInfo: ssh2Crypto.MAC_INFO["hmac-sha2-256"],
      macKey: randomBytes(32)
    }
  })
  // An SSH_MSG_CHANNEL_DATA packet: 9 bytes of header before the data.
  return timeIt(total, () => {
    for (let done = 0; done < total; done += PACKET) c.encrypt(c.allocPacket(PACKET + 9))
  })
}

const sha256Once = (total: number): number => {
  const data = randomBytes(MiB)
  return timeIt(total, () => {
    const h = createHash("sha256")
    for (let done = 0; done < total; done += MiB) h.update(data)
    h.digest()
  })
}

export interface CoreLimits {
  readonly cipher: Stat | undefined
  readonly sha256: Stat
  /** The lower of the two medians: what one core can carry through both. */
  readonly limit: number
}

/** The samples, measured in this process after an untimed pass of each (V8 and OpenSSL warmed up). */
const measure = (cipher: string, runs: number, total: number): { readonly cipher: number[]; readonly sha256: number[] } => {
  cipherOnce(cipher, 32 * MiB)
  sha256Once(32 * MiB)
  const c: number[] = []
  const s: number[] = []
  for (let i = 0; i < runs; i++) {
    const x = cipherOnce(cipher, total)
    if (x !== undefined) c.push(x)
    s.push(sha256Once(total))
  }
  return { cipher: c, sha256: s }
}

const self = fileURLToPath(import.meta.url)

/**
 * Medians of `runs` measurements over 256 MiB each (about a second per run on this machine), taken in a
 * fresh process: in the benchmark's own (a large heap after the transfers), every fresh 32 KiB packet
 * the cipher loop allocates brought on the collector, and the row read 0.6–1.5 GB/s for a cipher that
 * does 3.5–5 GB/s here (`openssl speed -evp aes-128-gcm -bytes 32768`: 4.9 GB/s).
 */
export const coreLimits = (cipher: string, runs: number, total = 256 * MiB): CoreLimits => {
  const out = execFileSync(process.execPath, ["--import", "tsx", self, "-measure", cipher, String(runs), String(total)], { encoding: "utf8" })
  const { cipher: c, sha256: s } = JSON.parse(out) as ReturnType<typeof measure>
  const cipherStat = c.length > 0 ? summarize(c) : undefined
  const sha256 = summarize(s)
  return { cipher: cipherStat, sha256, limit: Math.min(sha256.median, cipherStat?.median ?? Infinity) }
}

/** The limit rows, and each transfer (MB/s) as a fraction of the limit, with its goal if it has one. */
export const limitRows = (
  cipher: string,
  limits: CoreLimits,
  transfers: ReadonlyArray<{ readonly metric: string; readonly ours: Stat; readonly goal?: number }>
): Row[] => [
  ...(limits.cipher ? [row({ metric: `one core: ${cipher} (ssh2's cipher, 32 KiB packets)`, unit: "MB/s", ours: limits.cipher })] : []),
  row({ metric: "one core: sha256 (Node crypto)", unit: "MB/s", ours: limits.sha256 }),
  ...transfers.map((t) =>
    row({
      metric: `${t.metric}, fraction of the one-core limit`,
      unit: "×",
      ours: mapStat(t.ours, (x) => x / limits.limit),
      ...(t.goal !== undefined ? { target: { kind: "ours>=" as const, value: t.goal } } : {}),
      note: `limit ${limits.limit.toFixed(0)} MB/s: the lower of ${limits.cipher ? "the cipher and " : ""}sha256 on one core`
    })
  )
]

// `node --import tsx bench/lib/limits.ts -measure CIPHER RUNS BYTES`: the samples as JSON (coreLimits' child).
if (process.argv[1] === self && process.argv[2] === "-measure") {
  process.stdout.write(JSON.stringify(measure(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]))) + "\n")
}
