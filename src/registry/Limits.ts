// What one client can make the registry hold, and the budgets that keep operators served whatever the
// agents do. Every resource a client can make us hold has a limit here (docs/registry.md "Limits").
//
// File descriptors: the process limit (RLIMIT_NOFILE) is split into connections (-max-conns) and a file
// budget (what is left, less a reserve for the database, logs and the listener). Agents may use at most
// three quarters of the file budget; operators may use all of it, so an operator always finds fds free.
// Connections: agents may hold at most three quarters of -max-conns, so an operator always gets in.
import { readFileSync } from "node:fs"

export interface LimitsConfig {
  /** Connections at once, logged in or not (-max-conns). */
  readonly maxConns: number
  /** Connections at once from one address (-max-conns-per-source). */
  readonly maxConnsPerSource: number
  /** Session channels per connection (-max-sessions), as OpenSSH's MaxSessions. */
  readonly maxSessions: number
  /** Open SFTP handles per connection (-max-handles); 64 per session in any case. */
  readonly maxHandles: number
  /** Open SFTP handles per key, over all its connections (-max-handles-per-key). */
  readonly maxHandlesPerKey: number
  /** Largest upload in bytes (-max-upload). */
  readonly maxUpload: number
  /** Uploads in progress per operator key (-max-uploads-per-key). */
  readonly maxUploadsPerKey: number
  /** Out-of-order upload bytes held for hashing, over all uploads (fixed; 17 MiB per file). */
  readonly reorderBytes: number
  /** The process's open-file limit; read from /proc when not given. */
  readonly fdLimit: number
}

const GiB = 1024 ** 3
const MiB = 1024 ** 2

/** What a client is told when the registry has no file descriptor for it: never "no such file". */
export const BUSY = "registry busy: no file descriptors left, try again later"

/** The soft RLIMIT_NOFILE of this process (Linux), or 1024 if it cannot be read. */
export const processFdLimit = (): number => {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"))
    const n = Number(line?.split(/\s{2,}/)[1])
    return Number.isInteger(n) && n > 0 ? n : 1024
  } catch {
    return 1024
  }
}

/** The limits an operator sets with flags (src/registry/Flags.ts takes its defaults from here). */
export type FlagLimits = Omit<LimitsConfig, "reorderBytes" | "fdLimit">

export const FLAG_LIMIT_DEFAULTS: FlagLimits = {
  maxConns: 2048,
  maxConnsPerSource: 128,
  maxSessions: 10,
  maxHandles: 256,
  maxHandlesPerKey: 4096,
  maxUpload: 16 * GiB,
  maxUploadsPerKey: 64
}

export const defaultLimits = (): LimitsConfig => ({ ...FLAG_LIMIT_DEFAULTS, reorderBytes: 64 * MiB, fdLimit: processFdLimit() })

/**
 * Furthest a WRITE may start beyond the end of what an upload holds so far. Clients write in order or a
 * few MiB ahead (ssh2's fastPut: 64 × 255 KiB); a far offset only makes a sparse file that costs its whole
 * size to hash at CLOSE.
 */
export const MAX_WRITE_GAP = 256 * MiB

/** Descriptors kept for everything that is not a client's: database, logs, listener, temp files of housekeeping. */
const FD_RESERVE = 64

export type Side = "agent" | "operator"

/** A count with a ceiling. */
export class Counter {
  used = 0
  constructor(readonly max: number) {}
  take(n = 1): boolean {
    if (this.used + n > this.max) return false
    this.used += n
    return true
  }
  give(n = 1): void {
    this.used = Math.max(0, this.used - n)
  }
}

/** Counts per key (fingerprint), each with the same ceiling; entries at zero are dropped. */
export class KeyedCounter {
  private readonly counts = new Map<string, number>()
  constructor(readonly max: number) {}
  take(key: string): boolean {
    const n = this.counts.get(key) ?? 0
    if (n >= this.max) return false
    this.counts.set(key, n + 1)
    return true
  }
  give(key: string): void {
    const n = (this.counts.get(key) ?? 0) - 1
    if (n <= 0) this.counts.delete(key)
    else this.counts.set(key, n)
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0
  }
}

/** The registry-wide budgets, made once per server. */
export interface Budgets {
  readonly config: LimitsConfig
  /** Connections actually allowed (-max-conns, lowered to half the fd limit if need be). */
  readonly conns: Counter
  readonly agentConns: Counter
  readonly perSource: KeyedCounter
  /** File descriptors for client files; `fd(side)` takes one from the right share. */
  readonly fds: Counter
  readonly agentFds: Counter
  readonly handlesPerKey: KeyedCounter
  readonly uploadsPerKey: KeyedCounter
  readonly reorder: Counter
}

export const makeBudgets = (config: LimitsConfig): Budgets => {
  const maxConns = Math.max(1, Math.min(config.maxConns, Math.floor(config.fdLimit / 2)))
  const files = Math.max(16, config.fdLimit - maxConns - FD_RESERVE)
  return {
    config,
    conns: new Counter(maxConns),
    agentConns: new Counter(Math.max(1, Math.floor((maxConns * 3) / 4))),
    perSource: new KeyedCounter(config.maxConnsPerSource),
    fds: new Counter(files),
    agentFds: new Counter(Math.max(1, Math.floor((files * 3) / 4))),
    handlesPerKey: new KeyedCounter(config.maxHandlesPerKey),
    uploadsPerKey: new KeyedCounter(config.maxUploadsPerKey),
    reorder: new Counter(config.reorderBytes)
  }
}

/** Takes one client file descriptor from `side`'s share; false when none is left. */
export const takeFd = (b: Budgets, side: Side): boolean => {
  if (side === "agent" && !b.agentFds.take()) return false
  if (b.fds.take()) return true
  if (side === "agent") b.agentFds.give()
  return false
}
export const giveFd = (b: Budgets, side: Side): void => {
  b.fds.give()
  if (side === "agent") b.agentFds.give()
}

/**
 * What one SFTP session may hold: a handle takes a slot of its session (64), of its connection
 * (-max-handles) and of its key (-max-handles-per-key), and a file handle one fd of its side's share.
 * `take` answers why not, in the words the client is told.
 */
export interface HandleBudget {
  readonly take: (withFd: boolean) => string | undefined
  readonly give: (withFd: boolean) => void
}

export const handleBudget = (b: Budgets, side: Side, key: string, connection: Counter): HandleBudget => ({
  take: (withFd) => {
    if (!connection.take()) return "too many open files on this connection"
    if (!b.handlesPerKey.take(key)) {
      connection.give()
      return "too many open files for this key"
    }
    if (withFd && !takeFd(b, side)) {
      connection.give()
      b.handlesPerKey.give(key)
      return BUSY
    }
    return undefined
  },
  give: (withFd) => {
    connection.give()
    b.handlesPerKey.give(key)
    if (withFd) giveFd(b, side)
  }
})
