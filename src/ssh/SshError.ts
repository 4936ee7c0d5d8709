import { Data } from "effect"

/** A failure at the SSH edge; `message` is one line a user can act on. */
export class SshError extends Data.TaggedError("SshError")<{
  readonly reason: "Connect" | "HostKey" | "Auth" | "Exec" | "Sftp" | "Listen" | "Key"
  readonly message: string
  readonly cause?: unknown
}> {}

/** A remote file longer than the most the caller reads (a hostile peer can send an endless one). */
export class FileTooLarge extends Data.TaggedError("FileTooLarge")<{ readonly path: string; readonly limit: number }> {
  get message() {
    return `${this.path} is larger than ${this.limit} bytes, the most read`
  }
}
