// The agent's settings, from its flags (DESIGN.md "Agent flags"). Paths are absolute by the time
// they get here (main.ts resolves them against the working directory).
import { Context, Duration, Layer } from "effect"
import type { ParsedKey } from "ssh2"
import type { TrustSettings } from "./TrustPolicy.js"

export interface AgentSettings {
  /** Registry `host:port` (the first of -addr). */
  readonly host: string
  readonly port: number
  /** Every -addr address (replicas behind one name, Session.ts moves between them); absent: host:port only. */
  readonly addresses?: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** Configuration tracked. */
  readonly name: string
  /** Private key bytes (OpenSSH or PEM). */
  readonly privateKey: Buffer
  /** The key presented as its OpenSSH certificate (src/ssh/ClientAuth.ts), when there is one. */
  readonly certificate?: ParsedKey
  /** Which key is used and why, for the start-up line (`key PATH (SHA256:…, from -key)`). */
  readonly keyDescription?: string
  /** Pinned host key fingerprint, normalized `SHA256:…`. */
  readonly fingerprint: string
  /** Working directory: cache/, unpacked/. Absolute. */
  readonly dir: string
  /** Deploy script; "" skips it. Absolute when it contains a slash, else looked up in PATH. */
  readonly script: string
  /** State file, absolute; `<dir>/state.json` unless -state is given (one state file per agent). */
  readonly state: string
  /** Health check run after the deploy script; "" for none. Resolved like `script`. */
  readonly check: string
  /** The check must exit 0 within this; past it its process group is killed. */
  readonly checkTimeout: Duration.Duration
  /** Retry a hash recorded as failed after this long; undefined: only on a change or SIGHUP. */
  readonly retryFailed: Duration.Duration | undefined
  readonly poll: Duration.Duration
  /** Up to this much random delay before the first poll and after each one (spreads a fleet's polls). */
  readonly jitter: Duration.Duration
  /** This machine's name in reports and status (-host). */
  readonly hostName: string
  /** Watch session keepalive: a ping line this often; two silent intervals mean the registry is gone. */
  readonly ping: Duration.Duration
  /** A lost watch session reconnects after a random delay up to this (no thundering herd). */
  readonly reconnect: Duration.Duration
  readonly cleanOld: boolean
  readonly keepSuid: boolean
  readonly verbose: boolean
  /** -trust: deploy only states signed by these signers (TrustPolicy.ts); absent: no checks. */
  readonly trust?: TrustSettings
  /** -metrics-file: node_exporter textfile written after every attempt (MetricsFile.ts); absent: none. */
  readonly metricsFile?: string
  /** Grace period between SIGTERM and SIGKILL for the script's process group on shutdown. */
  readonly killGrace: Duration.Duration
}

export class AgentConfig extends Context.Tag("agent/AgentConfig")<AgentConfig, AgentSettings>() {
  static readonly layer = (settings: AgentSettings) => Layer.succeed(AgentConfig, settings)
}
