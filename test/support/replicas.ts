// Registries as the clients of several replicas see them: each started with -hostkey pointing at the
// first one's host key and trusting the same operator and agent keys, so one -fp, one -key and
// `-addr a,b` reach any of them. (With SQLite each keeps its own data; the PostgreSQL replicas share it.)
import { copyFile, cp } from "node:fs/promises"
import * as path from "node:path"
import { tempDir } from "./keys.js"
import { startRegistry, type TestRegistry } from "./registry.js"

/** Another registry with `first`'s host key (-hostkey FILE) and keys; `extraArgs` as startRegistry's. */
export const startSibling = async (first: TestRegistry, extraArgs: ReadonlyArray<string> = []): Promise<TestRegistry> => {
  const dir = await tempDir("deploy-replica-")
  await cp(path.join(first.dir, "test-keys"), path.join(dir, "test-keys"), { recursive: true })
  for (const f of ["operator.keys", "service.keys"]) await copyFile(path.join(first.dir, f), path.join(dir, f))
  return startRegistry({ dir, extraArgs: ["-hostkey", path.join(first.dir, "host_key"), ...extraArgs] })
}

/** `a:PORT,b:PORT` for `-addr`. */
export const addrList = (...regs: ReadonlyArray<TestRegistry>): string => regs.map((r) => r.addr).join(",")

/** A loopback address nothing listens on (a replica that is down for good). */
export const deadAddr = "127.0.0.1:1"
