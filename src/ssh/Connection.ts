// The client side of the SSH edge, shared by deployctl, the agent and deploy-from-docker:
// a scoped connection with TCP_NODELAY (SSH2.md pitfall 1), a tick's writes in one syscall, and a host key
// check done before auth.
import { Effect, type Scope } from "effect"
import * as net from "node:net"
import ssh2 from "ssh2"
import type { Client, ConnectConfig, ParsedKey, PublicKeyAuthMethod } from "ssh2"
import { coalesceWrites } from "./CoalesceWrites.js"
import { fingerprint } from "./Fingerprint.js"
import { SshError } from "./SshError.js"

export interface ConnectOptions {
  readonly host: string
  readonly port: number
  readonly username: string
  /** Decides whether the server's host key (raw blob) is trusted; may record what it saw. */
  readonly verifyHostKey: (keyBlob: Buffer) => boolean
  /** Message when verifyHostKey refused; gets the fingerprint seen. */
  readonly hostKeyRefused: (seen: string) => string
  readonly privateKey?: Buffer | string
  /** The private key presented as its OpenSSH certificate (ClientAuth.ts); tried before the plain key, as ssh does. */
  readonly certificate?: ParsedKey
  readonly agent?: string
  /** For a refused login: what was offered and what to do (ClientAuth.refusedAdvice). */
  readonly refused?: string
  readonly readyTimeoutMs?: number
}

/** Splits `host:port` (or `[v6]:port`); the port defaults to 2022 as the registry's does. */
export const parseAddress = (addr: string): { host: string; port: number } | undefined => {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(addr.trim())
  if (!m) return undefined
  const host = m[1] ?? m[2] ?? ""
  const port = m[3] === undefined ? 2022 : Number(m[3])
  if (host === "" || !(port > 0 && port < 65536)) return undefined
  return { host, port }
}

const ignoreLateError = () => {}
const sockets = new WeakMap<Client, net.Socket>()

export const connect = (opts: ConnectOptions): Effect.Effect<Client, SshError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Client, SshError>((resume) => {
      let seen: string | undefined
      const sock = net.connect({ host: opts.host, port: opts.port })
      sock.setNoDelay(true)
      coalesceWrites(sock)
      const client = new ssh2.Client()
      const fail = (reason: SshError["reason"], message: string, cause?: unknown) =>
        resume(Effect.fail(new SshError({ reason, message, cause })))
      sock.once("error", (cause) => {
        fail("Connect", `cannot connect to ${opts.host}:${opts.port}: ${cause.message}`, cause)
        client.end()
      })
      const onSetupError = (cause: Error & { level?: string }) => {
        if (seen !== undefined && /host key|hostverif|verification failed/i.test(cause.message)) {
          fail("HostKey", opts.hostKeyRefused(seen), cause)
        } else if (cause.level === "client-authentication") {
          fail("Auth", `authentication to ${opts.host}:${opts.port} as ${opts.username} failed${opts.refused ? `: ${opts.refused}` : ""}`, cause)
        } else {
          fail("Connect", `ssh connection to ${opts.host}:${opts.port} failed: ${cause.message}`, cause)
        }
        sock.destroy()
      }
      sockets.set(client, sock)
      client.once("error", onSetupError).once("ready", () => {
        // An error after 'ready' (connection reset, protocol error) must not crash the process as
        // an unhandled 'error' event: the channels in use fail on their own when the client closes.
        client.removeListener("error", onSetupError)
        client.on("error", ignoreLateError)
        resume(Effect.succeed(client))
      })
      const config: ConnectConfig = {
        sock,
        username: opts.username,
        readyTimeout: opts.readyTimeoutMs ?? 20_000,
        hostVerifier: (key: Buffer) => {
          seen = fingerprint(key)
          return opts.verifyHostKey(key)
        },
        ...(opts.privateKey !== undefined ? { privateKey: opts.privateKey } : {}),
        ...(opts.certificate !== undefined && opts.privateKey !== undefined
          ? {
              authHandler: [
                { type: "publickey", username: opts.username, key: opts.certificate },
                { type: "publickey", username: opts.username, key: opts.privateKey }
              ] satisfies Array<PublicKeyAuthMethod> as unknown as ConnectConfig["authHandler"]
            }
          : {}),
        ...(opts.agent !== undefined ? { agent: opts.agent } : {})
      }
      try {
        client.connect(config)
      } catch (cause) {
        fail("Key", `cannot use the private key: ${(cause as Error).message}`, cause)
      }
      return Effect.sync(() => {
        client.end()
        sock.destroy()
      })
    }),
    (client) =>
      Effect.sync(() => {
        client.end()
        // end() only half-closes; a peer that stopped answering must not keep the process alive.
        const sock = sockets.get(client)
        if (sock && !sock.destroyed) setTimeout(() => sock.destroy(), 2000).unref()
      })
  )
