import { Data } from "effect"

/** A failure at the SSH edge; `message` is one line a user can act on. */
export class SshError extends Data.TaggedError("SshError")<{
  readonly reason: "Connect" | "HostKey" | "Auth" | "Exec" | "Sftp" | "Listen" | "Key"
  readonly message: string
  readonly cause?: unknown
}> {}
