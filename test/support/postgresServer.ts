// A real PostgreSQL for tests and benchmarks (no vitest here; test files use postgres.ts): a copy of an
// initdb'ed template in a temp dir, `postgres` on a free loopback port (as `nobody` when we are root:
// PostgreSQL refuses to run as root), a fresh database per test, fast shutdown and removal at the end.
// kill/restart let a test take the database away under load.
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { type ChildProcess, execFileSync, spawn, type SpawnOptions } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, statSync } from "node:fs"
import { chown, mkdtemp, rename, rm } from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** The directory holding initdb and postgres: PATH first, then Debian's /usr/lib/postgresql/<major>/bin (newest). */
export const postgresBinDir = (): string | undefined => {
  for (const d of (process.env.PATH ?? "").split(path.delimiter)) {
    if (d !== "" && existsSync(path.join(d, "initdb")) && existsSync(path.join(d, "postgres"))) return d
  }
  const root = "/usr/lib/postgresql"
  if (!existsSync(root)) return undefined
  const majors = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, "bin", "initdb")) && existsSync(path.join(root, v, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a))
  return majors.length > 0 ? path.join(root, majors[0]!, "bin") : undefined
}

/** Why PostgreSQL tests cannot run here, or undefined when they can (use with describe.skipIf). */
export const postgresMissing = (): string | undefined =>
  postgresBinDir() === undefined ? "no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin" : undefined

const nobody = { uid: 65534, gid: 65534 }
const asRoot = process.getuid?.() === 0

/** Spawn options running as `nobody` when we are root. */
const runAs = (): Pick<SpawnOptions, "uid" | "gid"> => (asRoot ? nobody : {})

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

/** Runs one statement against `url` (the maintenance database for CREATE DATABASE). */
const execute = (url: string, statement: string) =>
  Effect.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1, connectTimeout: "2 seconds" }))
    )
  )

export interface TestPostgres {
  readonly host: string
  readonly port: number
  /** The URL of database `db` on this server (user postgres, trust auth on loopback). */
  readonly url: (db?: string) => string
  /** A new database, empty or a copy of database `template` (which nobody may be connected to); returns its URL. */
  readonly createDatabase: (template?: string) => Promise<string>
  /** Sends `signal` to the postmaster and waits for it to exit (SIGKILL: a crash; SIGINT: fast shutdown). */
  readonly kill: (signal?: NodeJS.Signals) => Promise<void>
  /** Sends `signal` to the postmaster without waiting (SIGSTOP/SIGCONT: new connections wait, open ones work). */
  readonly signal: (signal: NodeJS.Signals) => void
  /** Starts the server again on the same directory and port; resolves when it accepts connections. */
  readonly restart: () => Promise<void>
  /** Fast shutdown and removal of the data directory. */
  readonly stop: () => Promise<void>
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once("exit", () => resolve())
  })

const initdbArgs = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]

/** A fresh temp directory owned by the user postgres runs as. */
const ownDir = async (prefix: string) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix))
  if (asRoot) await chown(dir, nobody.uid, nobody.gid)
  return dir
}

/**
 * An initdb'ed data directory to copy (initdb costs ~1.3 s of CPU, a copy ~0.2 s), made once per
 * PostgreSQL build and user and kept in the temp dir; named by a hash of the binary and initdb's
 * arguments, so another version or setting makes its own. Made aside and renamed into place: workers
 * starting at once may each make one, and all but the first rename are dropped.
 */
const template = async (bin: string): Promise<string> => {
  const postgres = statSync(path.join(bin, "postgres"))
  const key = createHash("sha256").update(JSON.stringify([bin, postgres.size, postgres.mtimeMs, initdbArgs, process.getuid?.()])).digest("hex").slice(0, 16)
  const ready = path.join(os.tmpdir(), `deploy-tools-pg-template-${key}`)
  if (existsSync(path.join(ready, "data", "PG_VERSION"))) return path.join(ready, "data")
  const dir = await ownDir("deploy-tools-pg-template-new-")
  execFileSync(path.join(bin, "initdb"), ["-D", path.join(dir, "data"), ...initdbArgs], {
    ...runAs(),
    cwd: dir, // nobody may not be able to enter ours (CI works under /root)
    stdio: ["ignore", "ignore", "pipe"]
  })
  await rename(dir, ready).catch(() => rm(dir, { recursive: true, force: true }))
  return path.join(ready, "data")
}

/** Starts a private PostgreSQL server; the caller stops it. */
export const startPostgres = async (): Promise<TestPostgres> => {
  const bin = postgresBinDir()
  if (bin === undefined) throw new Error(postgresMissing())
  const from = await template(bin)
  const dir = await ownDir("registry-pg-")
  const data = path.join(dir, "data")
  // cp -a keeps the owner (nobody) and postgres' 0700 on the data directory.
  execFileSync("cp", ["-a", from, data], { stdio: ["ignore", "ignore", "pipe"] })
  const host = "127.0.0.1"
  const port = await freePort()
  const url = (db = "postgres") => `postgres://postgres@${host}:${port}/${db}`
  let child: ChildProcess | undefined
  let log = ""
  let version = 0

  const launch = async () => {
    log = ""
    // fsync off and no full-page writes: tests need no durability across power cuts, only speed. But
    // synchronous_commit stays on: the kill tests kill -9 the database and count acknowledged changes, and
    // with it off a commit is acknowledged before its WAL is even written, so a kill right after loses it
    // (Replicas.test once reported "1 lost" that way). A process kill keeps what was written to the OS.
    const c = spawn(
      path.join(bin, "postgres"),
      ["-D", data, "-k", dir, "-p", String(port), "-h", host, "-F", "-c", "fsync=off", "-c", "full_page_writes=off",
        "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
      { ...runAs(), cwd: dir, stdio: ["ignore", "ignore", "pipe"] }
    )
    c.stderr!.on("data", (b: Buffer) => {
      log = (log + b.toString()).slice(-4000)
    })
    child = c
    const deadline = Date.now() + 30_000
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`postgres exited at start:\n${log}`)
      try {
        const [row] = (await execute(url(), "SELECT current_setting('server_version_num')::int AS v")) as ReadonlyArray<{ v: number }>
        version = row?.v ?? 0
        return
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections in 30s:\n${log}`, { cause: e })
        await new Promise((r) => setTimeout(r, 100))
      }
    }
  }
  await launch()
  // A test process that dies (vitest killed, a crash) must not leave a postmaster behind.
  const orphanGuard = () => child?.kill("SIGKILL")
  process.once("exit", orphanGuard)

  let n = 0
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    const c = child
    if (c === undefined) return
    child = undefined
    c.kill(signal)
    await exited(c)
    // After a SIGKILL of the postmaster its backends may still hold the shared memory for a moment;
    // a restart waits for them through postgres' own "lock file already exists" retry below.
  }
  return {
    host,
    port,
    url,
    createDatabase: async (template) => {
      const name = `t${process.pid}_${++n}`
      // FILE_COPY (PostgreSQL 15+, where WAL_LOG became the default): a copy of the files and a checkpoint, half
      // the CPU of writing a small template through the WAL (54-63 against 121 ms per database, measured).
      const strategy = version >= 150000 ? " STRATEGY = FILE_COPY" : ""
      await execute(url(), `CREATE DATABASE ${name}${template === undefined ? "" : ` TEMPLATE ${template}`}${strategy}`)
      return url(name)
    },
    kill,
    signal: (signal) => void child?.kill(signal),
    restart: async () => {
      const deadline = Date.now() + 30_000
      for (;;) {
        try {
          return await launch()
        } catch (e) {
          if (Date.now() > deadline) throw e
          await new Promise((r) => setTimeout(r, 200))
        }
      }
    },
    stop: async () => {
      await kill("SIGINT")
      process.removeListener("exit", orphanGuard)
      await rm(dir, { recursive: true, force: true })
    }
  }
}

