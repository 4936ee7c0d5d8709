// Promise-shaped operator and agent clients for the reliability tests, built on the project's own
// client edge (src/ssh/Connection.ts, Exec.ts, Sftp.ts) so the tests drive the same code deployctl uses.
import { Effect, Exit, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import type { Client, SFTPWrapper } from "ssh2"
import { connect } from "../../../src/ssh/Connection.js"
import { exec, type ExecResult } from "../../../src/ssh/Exec.js"
import { fingerprint } from "../../../src/ssh/Fingerprint.js"
import { openSftp } from "../../../src/ssh/Sftp.js"
import { readCapped } from "../../../src/ssh/SftpRead.js"
import { upload } from "../../../src/ssh/SftpWrite.js"

export interface Target {
  readonly port: number
  readonly fingerprint: string
}

export interface Session {
  readonly client: Client
  /** Runs one command; a non-zero exit is a result. Rejects when the connection is lost. */
  readonly exec: (command: string) => Promise<ExecResult>
  /** Uploads bytes over the operator SFTP; resolves with their sha256 once the server acknowledged CLOSE. */
  readonly upload: (bytes: Uint8Array, name?: string, onProgress?: (acknowledged: number) => void) => Promise<string>
  /** An SFTP session (ended with the connection). */
  readonly sftp: () => Promise<SFTPWrapper>
  readonly readFile: (path: string) => Promise<Buffer>
  readonly close: () => Promise<void>
}

export const sha256 = (b: Uint8Array | string): string => createHash("sha256").update(b).digest("hex")

/** Connects as `user` with the private key at `keyPath`, pinning the registry's host key. */
export const openSession = async (target: Target, keyPath: string, user = "operator", readyTimeoutMs = 20_000): Promise<Session> => {
  const scope = Effect.runSync(Scope.make())
  const run = <A, E>(eff: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.extend(eff, scope))
  let client: Client
  try {
    client = await run(
      connect({
        host: "127.0.0.1",
        port: target.port,
        username: user,
        privateKey: readFileSync(keyPath),
        readyTimeoutMs,
        verifyHostKey: (key) => fingerprint(key) === target.fingerprint,
        hostKeyRefused: (seen) => `unexpected host key ${seen}`
      })
    )
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    throw e
  }
  // ssh2 emits "error" on a client whose server vanished; a test must see a rejected call, not a crash.
  client.on("error", () => undefined)
  client.setMaxListeners(100) // tests multiplex many execs on one connection (Exec adds a "close" listener per call)
  // ssh2 drops SFTP requests issued after the channel closed (G-bugs.md): the crash loops must not wait on them.
  const closed = new Promise<never>((_, reject) => client.once("close", () => reject(new Error("connection closed"))))
  closed.catch(() => undefined)
  const orClosed = <A>(p: Promise<A>): Promise<A> => Promise.race([p, closed])
  let sftpSession: Promise<SFTPWrapper> | undefined
  const sftp = () => (sftpSession ??= run(openSftp(client)))
  return {
    client,
    exec: (command) => Effect.runPromise(exec(client, command)),
    upload: async (bytes, name = "upload.bin", onProgress) => {
      const s = await orClosed(sftp())
      await orClosed(Effect.runPromise(upload(s, name, Stream.make(bytes), onProgress ? { onProgress } : {})))
      return sha256(bytes)
    },
    sftp,
    readFile: async (p) => orClosed(Effect.runPromise(readCapped(await orClosed(sftp()), p, 64 * 1024 * 1024))),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** Exec on a fresh connection (one shot). */
export const execOnce = async (target: Target, keyPath: string, command: string): Promise<ExecResult> => {
  const s = await openSession(target, keyPath)
  try {
    return await s.exec(command)
  } finally {
    await s.close()
  }
}

/** A real operator round trip on a fresh connection: `help` answers with the command list. */
export const helpWorks = async (target: Target & { readonly operator: { readonly privatePath: string } }): Promise<boolean> => {
  const s = await openSession(target, target.operator.privatePath)
  try {
    const r = await s.exec("help")
    return r.code === 0 && r.stdout.toString().includes("addver")
  } finally {
    await s.close()
  }
}
