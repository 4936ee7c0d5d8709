// Blobs in PostgreSQL (-db): one `blobs` row per blob, its bytes in 1 MiB `blob_chunks` rows, so
// replicas share them without a shared filesystem. Chunks are written while the upload arrives, as a
// staged upload nothing reads (PgUploadStage.ts), and become the blob's inside the caller's transaction
// (addver: the blob and its version commit together, a replica dying mid-way leaves nothing visible);
// read a few chunks per binary COPY (never a whole blob in memory), served through the replica's BlobCache.
//
// Retention races addver across replicas: addver's `has` takes a share lock on the blob row, and
// `remove` locks it for update and then deletes only if no version references it, in a statement
// that runs after the lock is granted and so sees every version committed before.
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer, Stream } from "effect"
import { open } from "node:fs/promises"
import { StorageError } from "../domain/Errors.js"
import { type Sha256, sha256Problem } from "../domain/Names.js"
import { type BlobCache, make as makeCache } from "./BlobCache.js"
import { type BlobInfo, BlobStore, io } from "./BlobStore.js"
import { RegistryConfig } from "./RegistryConfig.js"
import { copyOutRows } from "./PgCopyOut.js"
import { CHUNK_BYTES, makeStage } from "./PgUploadStage.js"
import { orStorage } from "./StorageRows.js"

export { CHUNK_BYTES }
/** Chunks fetched per COPY when reading (two batches at most in memory per reader). */
const READ_CHUNKS = 4

const checked = (hash: string) =>
  sha256Problem(hash) === undefined ? Effect.succeed(hash as Sha256) : Effect.fail(new StorageError({ reason: "invalid blob hash" }))

export const make = (sql: SqlClient.SqlClient, cache: BlobCache) => {
  const has = (hash: Sha256) =>
    Effect.flatMap(checked(hash), (h) =>
      orStorage(Effect.map(sql`SELECT 1 FROM blobs WHERE hash = ${h} FOR SHARE`, (rows) => rows.length > 0))
    )

  const statBlob = (hash: Sha256) =>
    Effect.flatMap(checked(hash), (h) =>
      orStorage(
        Effect.map(
          sql<{ size: string | number; created: string }>`SELECT size, created FROM blobs WHERE hash = ${h}`,
          ([row]): BlobInfo | undefined => row && { hash: h, size: Number(row.size), mtime: new Date(row.created) }
        )
      )
    )

  /** Chunks [from, from + count) of `h` by one binary COPY; fails unless they are all there, in order. */
  const batch = (h: Sha256, from: number, count: number) =>
    // `h` is 64 hex digits (checked) and the numbers integers: nothing else reaches the statement.
    copyOutRows(sql, `COPY (SELECT n, data FROM blob_chunks WHERE hash = '${h}' AND n >= ${from} AND n < ${from + count}
      ORDER BY n) TO STDOUT (FORMAT binary)`).pipe(
      Effect.flatMap((rows) =>
        rows.length !== count || rows.some((r, i) => r.length !== 2 || r[0]?.length !== 4 || r[0].readInt32BE(0) !== from + i || r[1] === null)
          ? Effect.fail(new StorageError({ reason: "a stored blob is missing a chunk" }))
          : Effect.succeed(rows.map((r) => r[1] as Uint8Array))
      )
    )

  /**
   * READ_CHUNKS chunks per COPY (binary: PgCopyOut.ts), two batches fetched at once (the server reads
   * one while it sends the other), emitted in order; fails if the blob is missing or a chunk is.
   */
  const stream = (hash: Sha256): Stream.Stream<Uint8Array, StorageError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const h = yield* checked(hash)
        const info = yield* statBlob(h)
        if (info === undefined) return yield* new StorageError({ reason: "blob not found" })
        const chunks = Math.ceil(info.size / CHUNK_BYTES)
        const batches = Math.ceil(chunks / READ_CHUNKS)
        return (batches === 0 ? Stream.empty : Stream.range(0, batches - 1)).pipe(
          Stream.mapEffect((b) => batch(h, b * READ_CHUNKS, Math.min(READ_CHUNKS, chunks - b * READ_CHUNKS)), { concurrency: 2 }),
          Stream.mapConcat((rows) => rows)
        )
      })
    )

  /**
   * A complete staged upload of `h` whose chunks are exactly `size` bytes numbered from 0, linked to the
   * blob: its rows get the blob's key (the bytes are not rewritten) and the staged row goes. Locked
   * first, so the janitor cannot sweep it meanwhile, nor another addver link it twice. False if none.
   */
  const linkStaged = (h: Sha256, size: number) =>
    Effect.gen(function* () {
      const [staged] = yield* sql<{ id: string }>`SELECT id FROM staged_uploads WHERE hash = ${h} AND completed IS NOT NULL
        ORDER BY completed DESC LIMIT 1 FOR UPDATE SKIP LOCKED`
      if (staged === undefined) return false
      const [got] = yield* sql<{ k: number; top: number; bytes: string }>`SELECT COUNT(*)::int AS k, COALESCE(MAX(n), -1) AS top,
        COALESCE(SUM(octet_length(data)), 0)::text AS bytes FROM blob_chunks WHERE upload = ${staged.id}`
      if (got === undefined || got.k !== Math.ceil(size / CHUNK_BYTES) || got.top !== got.k - 1 || Number(got.bytes) !== size) return false
      yield* sql`UPDATE blob_chunks SET hash = ${h}, upload = NULL WHERE upload = ${staged.id}`
      yield* sql`DELETE FROM staged_uploads WHERE id = ${staged.id}`
      return true
    })

  // Inside the caller's transaction (addver): the upload's staged chunks when it streamed in, else the
  // file's bytes. Then the staged upload moves into this replica's cache, so it is consumed as the disk
  // store's rename consumes it (retention keeps blobs of pending uploads).
  const adopt = (tempPath: string, hash: Sha256) =>
    Effect.gen(function* () {
      const h = yield* checked(hash)
      const fh = yield* io("cannot read the uploaded layer", () => open(tempPath, "r"))
      yield* Effect.gen(function* () {
        const { size } = yield* io("cannot read the uploaded layer", () => fh.stat())
        const created = new Date().toISOString()
        const fresh = yield* orStorage(sql`INSERT INTO blobs (hash, size, created) VALUES (${h}, ${size}, ${created})
          ON CONFLICT (hash) DO NOTHING RETURNING hash`)
        if (fresh.length === 0) return // another replica stored it meanwhile: written once
        if (yield* orStorage(linkStaged(h, size))) return
        for (let n = 0, offset = 0; offset < size; n++, offset += CHUNK_BYTES) {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size - offset))
          const { bytesRead } = yield* io("cannot read the uploaded layer", () => fh.read(buf, 0, buf.length, offset))
          if (bytesRead !== buf.length) return yield* new StorageError({ reason: "the uploaded layer changed while stored" })
          yield* orStorage(sql`INSERT INTO blob_chunks (hash, n, data) VALUES (${h}, ${n}, ${buf})`)
        }
      }).pipe(Effect.ensuring(Effect.promise(() => fh.close())))
      yield* cache.seed(tempPath, h)
    })

  // Chunks are deleted with their blob (blob_chunks.hash has no foreign key: staged chunks use it too).
  const remove = (hash: Sha256) =>
    Effect.gen(function* () {
      const h = yield* checked(hash)
      yield* orStorage(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`SELECT 1 FROM blobs WHERE hash = ${h} FOR UPDATE`
            const gone = yield* sql`DELETE FROM blobs WHERE hash = ${h} AND NOT EXISTS (SELECT 1 FROM versions WHERE hash = ${h}) RETURNING hash`
            if (gone.length > 0) yield* sql`DELETE FROM blob_chunks WHERE hash = ${h}`
          })
        )
      )
      yield* cache.remove(h)
    })

  // Started or completed before `ttl` ago: a replica killed mid-upload, or an upload nobody claimed.
  // Deleting the row deletes its chunks (ON DELETE CASCADE).
  const sweepStaged = (ttl: Duration.Duration) =>
    orStorage(
      Effect.map(
        sql`DELETE FROM staged_uploads WHERE COALESCE(completed, created) < now() - make_interval(secs => ${Duration.toSeconds(ttl)})
          RETURNING id`,
        (rows) => rows.length
      )
    )

  const list = orStorage(
    Effect.map(sql<{ hash: Sha256 }>`SELECT hash FROM blobs ORDER BY hash`, (rows) => rows.map((r) => r.hash))
  )

  const local = (hash: Sha256) => Effect.flatMap(checked(hash), (h) => cache.local(h, stream(h)))
  const serve = (hash: Sha256) => Effect.flatMap(checked(hash), (h) => cache.serve(h, stream(h)))

  return BlobStore.of({ has, stat: statBlob, local, serve, stream, adopt, stageUpload: Effect.sync(() => makeStage(sql)), sweepStaged, remove, list })
}

/** Blobs in the PostgreSQL database of SqlClient, cached under `<RegistryConfig.dir>/cache` (capped at `cacheMax`). */
export const PgBlobStoreLive = Layer.effect(
  BlobStore,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { dir, cacheMax } = yield* RegistryConfig
    return make(sql, yield* makeCache(dir, cacheMax))
  })
)
