// One agent per -dir. The lock is a listening Unix socket, which the kernel releases with the
// process (no pid file to go stale). On Linux it lives in the abstract namespace (nothing on
// disk); elsewhere it is <dir>/.agent.lock.sock, and a socket file nobody answers on is stale.
import { Effect, type Scope } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import { LockFailed, LockHeld } from "../domain/AgentErrors.js"

const listen = (address: string) =>
  new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer((c) => c.destroy())
    server.once("error", reject)
    server.listen({ path: address, exclusive: true }, () => {
      server.removeListener("error", reject)
      server.unref() // the lock must not keep a finished agent alive
      resolve(server)
    })
  })

const answers = (address: string) =>
  new Promise<boolean>((resolve) => {
    const c = net.connect({ path: address })
    c.once("connect", () => {
      c.destroy()
      resolve(true)
    })
    c.once("error", () => resolve(false))
  })

/** The lock's address for a directory (by its real path, so `.` and `/abs/dir` collide). */
export const lockAddress = async (dir: string): Promise<string> => {
  const real = await fs.realpath(dir)
  return process.platform === "linux"
    ? `\0deploy-agent:${createHash("sha256").update(real).digest("hex")}`
    : path.join(real, ".agent.lock.sock")
}

/** Holds the lock on `dir` for the scope's lifetime; fails at once when another agent holds it. */
export const acquireLock = (dir: string): Effect.Effect<void, LockHeld | LockFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const address = await lockAddress(dir)
        try {
          return await listen(address)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE" || address.startsWith("\0") || (await answers(address))) throw e
          await fs.rm(address, { force: true }) // stale socket file of a dead agent
          return await listen(address)
        }
      },
      catch: (e) =>
        (e as NodeJS.ErrnoException).code === "EADDRINUSE"
          ? new LockHeld({ dir })
          : new LockFailed({ message: `cannot lock directory ${dir}: ${(e as Error).message}` })
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.asVoid)
