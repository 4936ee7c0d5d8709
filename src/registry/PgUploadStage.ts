// An upload streamed into PostgreSQL as it arrives (BlobStore's UploadStage): its in-order bytes are cut
// into 1 MiB chunks inserted as blob_chunks rows keyed by a fresh upload id (a `staged_uploads` row,
// Migrations.ts), so that addver only links them to the blob in its transaction (PgBlobStore.adopt).
// Until then nothing names them: a replica killed mid-upload leaves rows no reader sees, which the
// janitor removes (sweepStaged). Bounded: past STAGE_AHEAD chunks not yet stored the upload waits
// (SftpUpload holds back its WRITE replies), past STAGE_MAX the stage gives up; any database failure
// also only drops the stage, and addver then writes the blob from the staged file as before.
import type { SqlClient } from "@effect/sql"
import { Effect, Either, Exit } from "effect"
import { randomBytes } from "node:crypto"
import type { Sha256 } from "../domain/Names.js"
import type { UploadStage } from "./BlobStore.js"
import { orStorage } from "./StorageRows.js"

export const CHUNK_BYTES = 1024 * 1024
/** Chunks pushed and not yet stored past which the upload waits for the database. */
const STAGE_AHEAD = 4
/**
 * Past this the stage gives up: the writes a client sends without waiting for replies keep arriving
 * while it waits (OpenSSH and ssh2's fastPut keep up to 16 MiB outstanding).
 */
const STAGE_MAX = 24
/** Chunk inserts in flight (each on its own pooled connection). */
const INSERTS = 2

export const makeStage = (sql: SqlClient.SqlClient): UploadStage => {
  const id = `upload-${randomBytes(12).toString("hex")}`
  /** Never rejects: any failure (a defect too) is a Left, which only drops the stage. */
  const run = <A>(eff: Effect.Effect<A, unknown>) =>
    Effect.runPromiseExit(eff).then((exit) => (Exit.isSuccess(exit) ? Either.right(exit.value) : Either.left(exit.cause)))
  /** The staged_uploads row, inserted with the first chunk; false if it could not be. */
  let started: Promise<boolean> | undefined
  const begin = () =>
    (started ??= run(orStorage(sql`INSERT INTO staged_uploads (id) VALUES (${id})`)).then((r) => r._tag === "Right"))

  let failed = false
  let pushed = 0
  let current = Buffer.allocUnsafe(CHUNK_BYTES)
  let filled = 0
  let next = 0
  const queue: Array<{ readonly n: number; readonly data: Buffer }> = []
  let inFlight = 0
  const roomWaiters: Array<() => void> = []
  const idleWaiters: Array<() => void> = []

  const held = () => queue.length + inFlight
  const wake = () => {
    while (roomWaiters.length > 0 && (failed || held() < STAGE_AHEAD)) roomWaiters.shift()!()
    if (inFlight === 0 && (failed || queue.length === 0)) for (const f of idleWaiters.splice(0)) f()
  }
  const giveUp = () => {
    failed = true
    queue.length = 0
    wake()
  }

  const pump = () => {
    while (!failed && inFlight < INSERTS && queue.length > 0) {
      const c = queue.shift()!
      inFlight++
      // The foreign key on `upload` fails the insert once the staged row is gone (abandoned, swept).
      void begin()
        .then((ok) => ok && run(orStorage(sql`INSERT INTO blob_chunks (hash, n, data, upload) VALUES (${id}, ${c.n}, ${c.data}, ${id})`)).then((r) => r._tag === "Right"))
        .then((ok) => {
          inFlight--
          if (!ok) giveUp()
          pump()
          wake()
        })
    }
  }

  const flush = () => {
    queue.push({ n: next++, data: current.subarray(0, filled) })
    current = Buffer.allocUnsafe(CHUNK_BYTES)
    filled = 0
    if (held() > STAGE_MAX) return giveUp()
    pump()
  }

  const push = (bytes: Uint8Array) => {
    if (failed) return
    pushed += bytes.length
    for (let at = 0; at < bytes.length;) {
      const k = Math.min(CHUNK_BYTES - filled, bytes.length - at)
      current.set(bytes.subarray(at, at + k), filled)
      filled += k
      at += k
      if (filled === CHUNK_BYTES) flush()
    }
  }

  const whenRoom = (f: () => void) => (failed || held() < STAGE_AHEAD ? f() : void roomWaiters.push(f))

  const idle = () => new Promise<void>((resolve) => (inFlight === 0 && (failed || queue.length === 0) ? resolve() : void idleWaiters.push(resolve)))

  const abandon = Effect.promise(async () => {
    giveUp()
    if (started === undefined || !(await started)) return
    // Deleting the row deletes its chunks (ON DELETE CASCADE); inserts still in flight then fail.
    await run(sql`DELETE FROM staged_uploads WHERE id = ${id}`)
  })

  const complete = (hash: Sha256, size: number) =>
    Effect.promise(async () => {
      if (!failed && pushed !== size) giveUp() // not every byte came through in order
      if (!failed && filled > 0) flush()
      if (!failed) await begin() // an empty upload has no chunk, but its row
      await idle()
      if (failed) return false
      const r = await run(orStorage(sql`UPDATE staged_uploads SET hash = ${hash}, completed = now() WHERE id = ${id} RETURNING id`))
      return r._tag === "Right" && r.right.length === 1
    }).pipe(Effect.flatMap((ok) => (ok ? Effect.void : abandon)))

  return { push, whenRoom, complete, abandon }
}
