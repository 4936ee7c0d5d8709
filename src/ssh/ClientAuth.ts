// How a client proves who it is: a private key file (`-key`), else the ssh-agent at
// $SSH_AUTH_SOCK. Checked up front so the user gets one clear line (unreadable file,
// passphrase-protected key, no agent) instead of ssh2's "All configured authentication methods failed".
import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import ssh2 from "ssh2"
import { SshError } from "./SshError.js"

export type ClientAuth =
  | { readonly _tag: "Key"; readonly path: string; readonly privateKey: Buffer }
  | { readonly _tag: "Agent"; readonly socket: string }

const keyError = (message: string, cause?: unknown) => new SshError({ reason: "Key", message, cause })

const expandHome = (p: string) => (p === "~" || p.startsWith("~/") ? path.join(process.env.HOME || os.homedir(), p.slice(1)) : p)

/** Reads and parses a private key file; passphrase-protected keys are refused with advice. */
export const loadKey = (file: string): Effect.Effect<ClientAuth, SshError> =>
  Effect.gen(function* () {
    const p = expandHome(file)
    const data = yield* Effect.tryPromise({
      try: () => fs.readFile(p),
      catch: (cause) => keyError(`cannot read private key ${file}: ${(cause as Error).message}`, cause)
    })
    const parsed = ssh2.utils.parseKey(data)
    if (parsed instanceof Error) {
      if (/encrypted|passphrase/i.test(parsed.message)) {
        return yield* keyError(
          `private key ${file} is protected by a passphrase, which deployctl cannot ask for: add it to ssh-agent (ssh-add ${file}) and leave out -key`
        )
      }
      return yield* keyError(`${file} is not a usable private key: ${parsed.message}`, parsed)
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed
    if (key === undefined || !key.isPrivateKey()) return yield* keyError(`${file} is not a private key`)
    return { _tag: "Key", path: p, privateKey: data } as const
  })

/** The agent at `socket` (normally $SSH_AUTH_SOCK), if that is a socket. */
export const agentAt = (socket: string | undefined): Effect.Effect<ClientAuth, SshError> =>
  Effect.gen(function* () {
    if (socket === undefined || socket === "") {
      return yield* keyError("no -key given and SSH_AUTH_SOCK is not set: pass -key FILE or start ssh-agent and ssh-add a key")
    }
    const st = yield* Effect.tryPromise({
      try: () => fs.stat(socket),
      catch: (cause) => keyError(`SSH_AUTH_SOCK=${socket} is not usable (${(cause as Error).message}); is ssh-agent running?`, cause)
    })
    if (!st.isSocket()) return yield* keyError(`SSH_AUTH_SOCK=${socket} is not a socket; is ssh-agent running?`)
    return { _tag: "Agent", socket } as const
  })

/** `-key FILE` when given, else the ssh-agent named by `agentSocket`. */
export const resolve = (options: { readonly keyFile?: string | undefined; readonly agentSocket?: string | undefined }) =>
  options.keyFile !== undefined && options.keyFile !== "" ? loadKey(options.keyFile) : agentAt(options.agentSocket)

/** The part of ssh2's ConnectConfig (and our Connection options) that carries the credentials. */
export const connectFields = (auth: ClientAuth): { privateKey: Buffer } | { agent: string } =>
  auth._tag === "Key" ? { privateKey: auth.privateKey } : { agent: auth.socket }
