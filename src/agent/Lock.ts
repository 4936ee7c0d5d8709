// One agent per -dir, and one per state file (-state may point anywhere). The lock is a listening Unix socket, which the kernel releases with the
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

/** The lock's address for a state file, which need not exist yet (by its directory's real path). */
export const stateLockAddress = async (file: string): Promise<string> => {
  const real = path.join(await fs.realpath(path.dirname(file)), path.basename(file))
  return process.platform === "linux"
    ? `\0deploy-agent-state:${createHash("sha256").update(real).digest("hex")}`
    : `${real}.lock.sock`
}

/** Holds the lock on `dir` for the scope's lifetime; fails at once when another agent holds it. */
export const acquireLock = (dir: string): Effect.Effect<void, LockHeld | LockFailed, Scope.Scope> => hold(dir, "directory", lockAddress)

/** Holds the lock on the state file `file` for the scope's lifetime, like acquireLock. */
export const acquireStateLock = (file: string): Effect.Effect<void, LockHeld | LockFailed, Scope.Scope> =>
  hold(file, "state file", stateLockAddress)

const hold = (
  target: string,
  what: "directory" | "state file",
  addressOf: (p: string) => Promise<string>
): Effect.Effect<void, LockHeld | LockFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const address = await addressOf(target)
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
          ? new LockHeld({ dir: target, what })
          : new LockFailed({ message: `cannot lock ${what} ${target}: ${(e as Error).message}` })
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.asVoid)
