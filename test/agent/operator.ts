// Puts layers into a real test registry as its operator: SFTP upload, then `addver`/`addconf`/... over exec.
import * as fs from "node:fs"
import * as net from "node:net"
import { writeFile } from "node:fs/promises"
import * as path from "node:path"
import ssh2 from "ssh2"
import type { Client, ClientChannel, SFTPWrapper } from "ssh2"
import { fingerprint } from "../../src/ssh/Fingerprint.js"
import type { TestRegistry } from "../support/registry.js"
import { sha256 } from "./fixtures.js"

/** An operator connection whose socket does not keep the test process alive while idle. */
const connect = (reg: TestRegistry): Promise<Client> =>
  new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port: reg.port })
    sock.unref()
    sock.once("error", reject)
    const c = new ssh2.Client()
    c.once("ready", () => resolve(c))
      .once("error", reject)
      .connect({
        sock,
        username: "operator",
        privateKey: fs.readFileSync(reg.operator.privatePath),
        hostVerifier: (key: Buffer) => fingerprint(key) === reg.fingerprint
      })
  })

// One operator connection per registry, kept open across commands: a handshake per command cost the
// registry and the test process ~20 ms of CPU each, and tests that poll `status` every 100 ms paid it
// ten times a second. A connection the registry closed (stopped, restarted) is dropped and replaced.
// Each command or upload is a channel of its own; past 8 at once (the registry allows 10 sessions per
// connection) another connection is opened.
interface Pooled {
  readonly client: Promise<Client>
  busy: number
  closed: boolean
}
const pools = new WeakMap<TestRegistry, Array<Pooled>>()
const MAX_CHANNELS = 8

/** Failed before the registry saw the request (no channel): safe to send again on a new connection. */
class NoChannel extends Error {}

const withConnection = async <A>(reg: TestRegistry, use: (c: Client) => Promise<A>, retry = true): Promise<A> => {
  let pool = pools.get(reg)
  if (pool === undefined) pools.set(reg, (pool = []))
  let entry = pool.find((p) => !p.closed && p.busy < MAX_CHANNELS)
  if (entry === undefined) {
    const e: Pooled = { client: connect(reg), busy: 0, closed: false }
    const drop = () => {
      e.closed = true
      const i = pool.indexOf(e)
      if (i >= 0) pool.splice(i, 1)
    }
    pool.push(e)
    e.client.then((c) => void c.on("close", drop).on("error", drop), drop)
    entry = e
  }
  entry.busy++
  try {
    return await use(await entry.client)
  } catch (e) {
    // The registry closed this connection (restarted) before we heard of it.
    if (!(e instanceof NoChannel) || !retry) throw e
    entry.closed = true
    return withConnection(reg, use, false)
  } finally {
    entry.busy--
  }
}

/**
 * Opens a channel with `open` and hands it to `use` at once (its events may follow in the same tick);
 * a failure to open it is NoChannel.
 */
const channel = <Ch, A>(open: (cb: (err: Error | undefined, ch: Ch) => void) => void, use: (ch: Ch, done: (a: A) => void, fail: (e: Error) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => {
    try {
      open((err, ch) => (err ? reject(new NoChannel(err.message)) : use(ch, resolve, reject)))
    } catch (e) {
      reject(new NoChannel(e instanceof Error ? e.message : String(e)))
    }
  })

export const exec = (reg: TestRegistry, command: string): Promise<{ code: number; output: string }> =>
  withConnection(reg, (c) =>
    channel<ClientChannel, { code: number; output: string }>((cb) => c.exec(command, cb), (ch, done) => {
      let output = ""
      let code = -1
      ch.on("data", (b: Buffer) => (output += b.toString()))
      ch.stderr.on("data", (b: Buffer) => (output += b.toString()))
      ch.on("exit", (status: number) => (code = status))
      ch.on("close", () => done({ code, output }))
    })
  )

export const run = async (reg: TestRegistry, command: string): Promise<string> => {
  const r = await exec(reg, command)
  if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.output}`)
  return r.output
}

/** The configuration's current hash (`showconf -v`). */
export const currentHash = async (reg: TestRegistry, name: string): Promise<string> =>
  /Hash:\t([0-9a-f]{64})/.exec(await run(reg, `showconf -name ${name} -v`))![1]!

export const upload = async (reg: TestRegistry, bytes: Buffer): Promise<string> => {
  await withConnection(reg, (c) =>
    channel<SFTPWrapper, void>((cb) => c.sftp(cb), (sftp, done, fail) =>
      sftp.writeFile("/upload.tar.gz", bytes, (e) => {
        sftp.end()
        return e ? fail(e) : done()
      })
    )
  )
  return sha256(bytes)
}

/** Uploads `bytes` and records it as component `name` version `version`; returns its hash. */
export const addVersion = async (reg: TestRegistry, name: string, version: string, bytes: Buffer): Promise<string> => {
  const hash = await upload(reg, bytes)
  await run(reg, `addver -name ${name} -version ${version} -hash ${hash}`)
  return hash
}

/**
 * A hostile registry: `bytes` stored as component `name` version `version` behind the registry's
 * back (blob file and metadata row written directly), for layers its addver would refuse.
 */
export const plantVersion = async (reg: TestRegistry, name: string, version: string, bytes: Buffer): Promise<string> => {
  const hash = sha256(bytes)
  await writeFile(path.join(reg.dir, "files", hash), bytes, { mode: 0o644 })
  type Db = { pragma(s: string): unknown; prepare(s: string): { run(...a: Array<unknown>): unknown }; close(): void }
  const sqlite: string = "better-sqlite3" // untyped here (no @types): only these three calls are used
  const { default: Database } = (await import(sqlite)) as { default: new (file: string) => Db }
  const db = new Database(path.join(reg.dir, "state.db"))
  try {
    db.pragma("busy_timeout = 5000")
    db.prepare("INSERT INTO versions (component, version, hash, ctime) VALUES (?, ?, ?, ?)").run(name, version, hash, new Date().toISOString())
  } finally {
    db.close()
  }
  return hash
}

// The registry's `events` stream (docs/deployctl.md "events"), one exec channel per registry on a
// connection of its own, so tests wait for a change instead of asking `status` every 100 ms (each ask
// cost the registry ~4 ms of CPU and the test process as much). Reopened after the registry restarted.
interface EventFeed {
  seq: number
  open: boolean
  readonly waiters: Set<() => void>
}
const feeds = new WeakMap<TestRegistry, EventFeed>()

const feedOf = (reg: TestRegistry): EventFeed => {
  const known = feeds.get(reg)
  if (known !== undefined && known.open) return known
  const feed: EventFeed = { seq: known?.seq ?? 0, open: true, waiters: known?.waiters ?? new Set() }
  feeds.set(reg, feed)
  const wake = () => {
    feed.seq++
    for (const w of [...feed.waiters]) w()
  }
  // Not a wake-up: a registry that is down would make the waiters spin on reconnecting.
  const closed = () => {
    feed.open = false
  }
  connect(reg).then((c) => {
    c.on("error", closed).on("close", closed)
    c.exec("events", (err, ch) => {
      if (err) return void (closed(), c.end())
      let partial = ""
      ch.on("data", (b: Buffer) => {
        const lines = (partial + b.toString()).split("\n")
        partial = lines.pop()!
        // Pings carry no change: waking on them would be the polling this replaces.
        if (lines.some((l) => l !== "" && !l.includes('"Event":"ping"'))) wake()
      })
      ch.on("close", () => (closed(), c.end()))
    })
  }, closed)
  return feed
}

/**
 * Resolves once `cond` holds, asking again after each event of the registry (a report, a watch session
 * opened or closed, a rollout step, a new state) and at least every `everyMs` (for what no event signals).
 */
export const untilEvent = async (reg: TestRegistry, cond: () => boolean | Promise<boolean>, what: string, ms = 30_000, everyMs = 500): Promise<void> => {
  const end = Date.now() + ms
  for (;;) {
    const feed = feedOf(reg)
    const seen = feed.seq
    if (await cond()) return
    if (Date.now() >= end) throw new Error(`timed out waiting for: ${what}`)
    if (feed.seq !== seen) continue
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        feed.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, Math.min(everyMs, Math.max(0, end - Date.now())))
      feed.waiters.add(done)
    })
  }
}
