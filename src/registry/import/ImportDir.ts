// `deploy-registry import -from GO_DIR -dir DIR`: takes over a Go deploy-registry's data directory.
//
// All or nothing: everything is built in a temp directory beside DIR (blobs hard-linked or copied
// and verified, host_key copied, state.db written in one transaction) and renamed into place at the
// end; any failure removes the temp directory, and DIR stays as it was. DIR must be new or empty, so
// a second import refuses. GO_DIR is only ever read (state.db is read whole with O_RDONLY).
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { constants as fsConstants, createReadStream } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ImportError } from "../../domain/ImportError.js"
import { fsyncDir } from "../../fs/Atomic.js"
import { loadOrCreate } from "../../ssh/HostKey.js"
import { migrate } from "../Migrations.js"
import { insertState } from "../Storage.js"
import { SqlLive } from "../Sql.js"
import { BoltCorrupt, openBolt } from "./Bolt.js"
import { type GoRegistry, NotImportable, readGoRegistry } from "./GoImport.js"

/** Who made the imported states: the Go registry did not record it. */
export const IMPORTED = { user: "imported", fingerprint: "imported", comment: "" } as const

export interface ImportSummary {
  readonly components: number
  readonly versions: number
  readonly configurations: number
  readonly states: number
  readonly linked: number
  readonly copied: number
  readonly fingerprint: string
  readonly ignored: ReadonlyArray<string>
}

const problem = (message: string) => new ImportError({ message })

const code = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message

/** One filesystem step; `what` is the line the user sees before the system's error code. */
const io = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => (e instanceof ImportError ? e : problem(`${what}: ${code(e)}`)) })

/** SQLite's and bolt's magic numbers, to name what a state.db is. */
export const databaseKind = async (file: string): Promise<"bolt" | "sqlite" | "other" | "empty" | "missing"> => {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(file, fsConstants.O_RDONLY)
  } catch {
    return "missing"
  }
  try {
    const head = Buffer.alloc(4096 + 20)
    const { bytesRead } = await fh.read(head, 0, head.length, 0)
    if (bytesRead === 0) return "empty" // SQLite creates the file before its first write
    if (bytesRead >= 16 && head.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000") return "sqlite"
    // Bolt's meta magic sits after the 16-byte page header of page 0 (or of page 1, if page 0 is damaged).
    if ((bytesRead >= 20 && head.readUInt32LE(16) === 0xed0cdaed) || (bytesRead >= 4116 && head.readUInt32LE(4112) === 0xed0cdaed)) return "bolt"
    return "other"
  } finally {
    await fh.close()
  }
}

const readSource = (from: string) =>
  Effect.gen(function* () {
    const file = path.join(from, "state.db")
    const kind = yield* Effect.promise(() => databaseKind(file))
    if (kind === "missing" || kind === "empty") return yield* problem(`no state.db in ${from}: not a Go deploy-registry data directory`)
    if (kind === "sqlite") return yield* problem(`${from} already holds a registry of ours, not a Go one: nothing to import`)
    const bytes = yield* io(`cannot read ${file}`, () => fs.readFile(file, { flag: "r" }))
    return yield* Effect.try({
      try: () => readGoRegistry(openBolt(bytes)),
      catch: (e) =>
        e instanceof BoltCorrupt || e instanceof NotImportable
          ? problem(`${file}: ${e.message}`)
          : problem(`${file}: cannot read: ${(e as Error).message}`)
    })
  })

/** sha256 of a file, streamed. */
const hashFile = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash("sha256")
    createReadStream(file)
      .on("data", (c) => h.update(c))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")))
  })

/** Copies `src` to `dst` (new file, fsync'd), hashing the bytes on the way; returns their sha256. */
const copyHashed = async (src: string, dst: string): Promise<string> => {
  const out = await fs.open(dst, "wx", 0o644)
  try {
    const h = createHash("sha256")
    for await (const chunk of createReadStream(src)) {
      h.update(chunk as Buffer)
      await out.write(chunk as Buffer)
    }
    await out.sync()
    return h.digest("hex")
  } finally {
    await out.close()
  }
}

/** Puts every version's blob into `files/`: a hard link when GO_DIR is on the same filesystem, else a copy. */
const placeBlobs = (from: string, into: string, reg: GoRegistry) =>
  io("cannot place the blobs", async () => {
    const files = path.join(into, "files")
    await fs.mkdir(files, { mode: 0o700 })
    const counts = { linked: 0, copied: 0 }
    const owners = new Map<string, string>()
    for (const v of reg.versions) if (!owners.has(v.hash)) owners.set(v.hash, `version "${v.version}" of component "${v.component}"`)
    for (const [hash, owner] of owners) {
      const src = path.join(from, "files", hash)
      const dst = path.join(files, hash)
      try {
        await fs.access(src, fsConstants.R_OK)
      } catch (e) {
        throw problem(`${owner}: blob ${hash} cannot be read in ${path.join(from, "files")}: ${code(e)}`)
      }
      let actual: string
      try {
        await fs.link(src, dst)
        actual = await hashFile(dst)
        counts.linked++
      } catch (e) {
        // Another filesystem (EXDEV) or a link the system refuses (protected_hardlinks, EMLINK): copy.
        if (!["EXDEV", "EPERM", "EACCES", "EMLINK", "ENOTSUP"].includes(code(e))) throw e
        actual = await copyHashed(src, dst)
        counts.copied++
      }
      if (actual !== hash) throw problem(`${owner}: blob ${hash} has content with sha256 ${actual}`)
    }
    await fsyncDir(files)
    return counts
  })

/** Our schema, then every version, configuration and state: one transaction. */
const writeDatabase = (reg: GoRegistry) =>
  Effect.gen(function* () {
    yield* migrate
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(
      Effect.gen(function* () {
        for (const v of reg.versions) {
          yield* sql`INSERT INTO versions ${sql.insert({ component: v.component, version: v.version, hash: v.hash, ctime: v.ctime.toISOString() })}`
        }
        for (const c of reg.configurations) {
          const [conf] = yield* sql<{ id: number }>`INSERT INTO configurations (name, state_id) VALUES (${c.name}, 0) RETURNING id`
          let stateId = 0
          for (const s of c.states) {
            stateId = yield* insertState(sql, conf!.id, { time: s.time, hash: s.hash, who: IMPORTED, layers: s.layers })
          }
          yield* sql`UPDATE configurations SET state_id = ${stateId} WHERE id = ${conf!.id}`
        }
      })
    )
  })

/** DIR must be absent or an empty directory. */
const checkTarget = (dir: string) =>
  io(`cannot use -dir ${dir}`, async () => {
    let entries: Array<string>
    try {
      entries = await fs.readdir(dir)
    } catch (e) {
      if (code(e) === "ENOENT") return
      throw e
    }
    if (entries.includes("state.db")) throw problem(`-dir ${dir} already holds a registry (state.db): import only into a new or empty directory`)
    if (entries.length > 0) throw problem(`-dir ${dir} is not empty: import only into a new or empty directory`)
  })

export const importGoRegistry = (from: string, dir: string): Effect.Effect<ImportSummary, ImportError> =>
  Effect.gen(function* () {
    const source = path.resolve(from)
    const target = path.resolve(dir)
    if (source === target) return yield* problem("-from and -dir must differ: the Go data directory is never written")
    yield* checkTarget(target)
    const reg = yield* readSource(source)
    const parent = path.dirname(target)
    yield* io(`cannot create ${parent}`, () => fs.mkdir(parent, { recursive: true, mode: 0o700 }))

    return yield* Effect.acquireUseRelease(
      io(`cannot create a temp directory in ${parent}`, () => fs.mkdtemp(path.join(parent, `.${path.basename(target)}.import-`))),
      (tmp) =>
        Effect.gen(function* () {
          const counts = yield* placeBlobs(source, tmp, reg)
          yield* io(`cannot copy ${path.join(source, "host_key")} (agents pin its fingerprint)`, () =>
            fs.copyFile(path.join(source, "host_key"), path.join(tmp, "host_key"), fsConstants.COPYFILE_EXCL).then(() =>
              fs.chmod(path.join(tmp, "host_key"), 0o600)
            )
          )
          const hostKey = yield* loadOrCreate(tmp).pipe(Effect.mapError((e) => problem(`the Go registry's host key: ${e.message}`)))
          yield* io("cannot create uploads/", () => fs.mkdir(path.join(tmp, "uploads"), { mode: 0o700 }))
          yield* writeDatabase(reg).pipe(
            Effect.provide(SqlLive(tmp)),
            Effect.mapError((e) => problem(`cannot write the database: ${(e as { message?: string }).message ?? String(e)}`))
          )
          yield* io(`cannot move the import into ${target}`, async () => {
            await fsyncDir(tmp)
            await fs.rename(tmp, target)
            await fsyncDir(parent)
          })
          return {
            components: new Set(reg.versions.map((v) => v.component)).size,
            versions: reg.versions.length,
            configurations: reg.configurations.length,
            states: reg.configurations.reduce((n, c) => n + c.states.length, 0),
            ...counts,
            fingerprint: hostKey.fingerprint,
            ignored: reg.ignored
          } satisfies ImportSummary
        }),
      // After the rename the temp name is gone and this does nothing.
      (tmp) => Effect.promise(() => fs.rm(tmp, { recursive: true, force: true }))
    )
  })

export const renderSummary = (from: string, dir: string, s: ImportSummary): string =>
  [
    `imported ${from} into ${dir}: ${s.components} components, ${s.versions} versions, ` +
      `${s.configurations} configurations with ${s.states} states; blobs: ${s.linked} linked, ${s.copied} copied`,
    `host key kept: ${s.fingerprint}`,
    ...s.ignored.map((k) => `warning: ignored unknown top-level key ${JSON.stringify(k)} of state.db`)
  ].join("\n") + "\n"
