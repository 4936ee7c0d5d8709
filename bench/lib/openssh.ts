// The OpenSSH clients as measuring instruments: `sftp -b -` transfers and `ssh` exec, timed as whole processes.
import { run, runOk, type RunResult } from "./proc.js"

export interface Endpoint {
  readonly port: number
  readonly user: string
  /** From Sshd.clientOpts or Registry.clientOpts: identity, pinned host key, cipher. */
  readonly opts: ReadonlyArray<string>
}

/** Runs an sftp batch (commands separated by newlines); fails on any error in it. */
export const sftpBatch = (ep: Endpoint, batch: string): Promise<RunResult> =>
  runOk("sftp", ["-b", "-", "-P", String(ep.port), ...ep.opts, `${ep.user}@127.0.0.1`], { input: batch.endsWith("\n") ? batch : batch + "\n" })

const q = (p: string) => `"${p.replace(/(["\\])/g, "\\$1")}"`

export const sftpPut = (ep: Endpoint, local: string, remote: string): Promise<RunResult> => sftpBatch(ep, `put ${q(local)} ${q(remote)}`)

export const sftpGet = (ep: Endpoint, remote: string, local: string): Promise<RunResult> => sftpBatch(ep, `get ${q(remote)} ${q(local)}`)

export const sshRun = (ep: Endpoint, command: string): Promise<RunResult> =>
  run("ssh", ["-p", String(ep.port), ...ep.opts, `${ep.user}@127.0.0.1`, command])

/** MB/s (10^6 bytes per second) from a byte count and milliseconds. */
export const mbps = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000)
