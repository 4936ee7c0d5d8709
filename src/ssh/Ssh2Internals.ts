// Every use of ssh2's private fields and hooks, in one place (ssh2 is pinned to an exact version in
// package.json for this reason). Each accessor says what breaks without it; test/ssh/Ssh2Internals.test.ts
// checks the shape of each against the installed ssh2, so an upgrade that moves one fails that test by name
// instead of silently slowing a transfer or hanging a request.
import type { SFTPWrapper } from "ssh2"

interface ClientSftpInternals {
  /** Largest READ/WRITE the server allows; raised from 32 KiB by the server's limits@openssh.com reply. */
  readonly _maxReadLen?: unknown
  readonly _maxWriteLen?: unknown
  readonly outgoing?: { readonly state?: string }
  readonly incoming?: { readonly state?: string }
}
const client = (sftp: SFTPWrapper) => sftp as unknown as ClientSftpInternals

/**
 * Bytes one READ may ask for on this session. Without it every read would be 32 KiB: eight times the
 * requests and replies for the agent's downloads (ssh2 splits nothing on reads, it refuses larger ones).
 */
export const maxReadLen = (sftp: SFTPWrapper): number => {
  const n = client(sftp)._maxReadLen
  return typeof n === "number" && n > 0 ? n : 32 * 1024
}

/**
 * Bytes one WRITE may carry. ssh2 splits a larger write into sequential requests, each waiting for the
 * previous reply: without this, uploads would stop pipelining.
 */
export const maxWriteLen = (sftp: SFTPWrapper): number => {
  const n = client(sftp)._maxWriteLen
  return typeof n === "number" && n > 0 ? n : 32 * 1024
}

/**
 * Whether the SFTP channel is open both ways. ssh2 silently drops a request written to a channel that is
 * no longer open, without ever calling back: without this check such a request would wait forever. A
 * dropped connection closes `incoming` but may leave `outgoing` "open".
 */
export const channelOpen = (sftp: SFTPWrapper): boolean => {
  const s = client(sftp)
  return s.outgoing?.state === "open" && s.incoming?.state !== "closed"
}
