// Reading bytea fast: `COPY (SELECT …) TO STDOUT (FORMAT binary)` on a connection of the @effect/sql-pg
// pool. node-postgres reads every other result as text, bytea as hex (twice the bytes on the wire,
// encoded by the server and decoded here; its `binary` mode decodes each value as a UTF-8 string, which
// is slower still), while COPY's binary rows arrive as raw bytes: 3–5× faster on a blob's chunks.
// Rows are parsed as their CopyData messages arrive, whatever their boundaries.
import type { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { StorageError } from "../domain/Errors.js"

/** A row: its fields in order, `null` for SQL NULL; each Buffer is the row's own (copied). */
export type CopyRow = ReadonlyArray<Buffer | null>

/** The part of a node-postgres client used here: it runs a Submittable (as pg-cursor and pg-copy-streams do). */
interface RawClient {
  query(submittable: object): unknown
}

const SIGNATURE = Buffer.from("PGCOPY\n\xff\r\n\0", "latin1")

/** COPY's binary format (PostgreSQL docs, "Binary Format"): a header, then per row an int16 field count, each field int32 length + bytes; -1 ends. */
class BinaryRows {
  private pending = Buffer.alloc(0)
  private header = false
  ended = false
  readonly rows: Array<CopyRow> = []

  push(data: Buffer) {
    const buf = this.pending.length === 0 ? data : Buffer.concat([this.pending, data])
    let at = 0
    if (!this.header) {
      if (buf.length < 19) return void (this.pending = Buffer.from(buf))
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error("not a binary COPY stream")
      at = 19 + buf.readUInt32BE(15)
      this.header = true
    }
    for (;;) {
      if (buf.length - at < 2) break
      const fields = buf.readInt16BE(at)
      if (fields === -1) {
        this.ended = true
        at += 2
        break
      }
      const row: Array<Buffer | null> = []
      let p = at + 2
      for (let i = 0; i < fields; i++) {
        if (buf.length - p < 4) break
        const len = buf.readInt32BE(p)
        p += 4
        if (len === -1) {
          row.push(null)
          continue
        }
        if (buf.length - p < len) break
        row.push(Buffer.from(buf.subarray(p, p + len))) // the parser reuses its buffer: copy
        p += len
      }
      if (row.length < fields) break // incomplete: wait for more
      this.rows.push(row)
      at = p
    }
    this.pending = Buffer.from(buf.subarray(at))
  }
}

/** The node-postgres client behind a reserved connection (@effect/sql-pg keeps it as the connection's `pg`). */
const rawClient = (sql: SqlClient.SqlClient) =>
  Effect.flatMap(sql.reserve, (conn) => {
    const pg = (conn as unknown as { readonly pg?: RawClient }).pg
    return pg !== undefined && typeof pg.query === "function"
      ? Effect.succeed(pg)
      : Effect.fail(new StorageError({ reason: "cannot stream from the database" }))
  })

/**
 * Runs `copy`, a `COPY (…) TO STDOUT (FORMAT binary)` statement (no parameters: the caller inlines only
 * values it validated), and returns its rows. Holds one pooled connection while it runs.
 */
export const copyOutRows = (sql: SqlClient.SqlClient, copy: string): Effect.Effect<Array<CopyRow>, StorageError> =>
  Effect.scoped(
    Effect.flatMap(rawClient(sql).pipe(Effect.mapError((e) => (e instanceof StorageError ? e : new StorageError({ reason: "cannot read the database", cause: e })))), (client) =>
      Effect.async<Array<CopyRow>, StorageError>((resume) => {
        const rows = new BinaryRows()
        let failed: unknown = undefined
        let done = false
        const finish = (cause: unknown) => {
          if (done) return
          done = true
          if (cause !== undefined) resume(Effect.fail(new StorageError({ reason: "cannot read the database", cause })))
          else if (!rows.ended) resume(Effect.fail(new StorageError({ reason: "cannot read the database", cause: new Error("COPY ended early") })))
          else resume(Effect.succeed(rows.rows))
        }
        client.query({
          submit: (connection: { query: (text: string) => void }) => connection.query(copy),
          handleCopyData: (msg: { chunk: Buffer }) => {
            if (failed !== undefined) return
            try {
              rows.push(msg.chunk)
            } catch (e) {
              failed = e
            }
          },
          handleCopyInResponse: (connection: { sendCopyFail: (m: string) => void }) => connection.sendCopyFail("not a COPY FROM"),
          handleRowDescription: () => undefined,
          handleDataRow: () => undefined,
          handleEmptyQuery: () => undefined,
          handlePortalSuspended: () => undefined,
          handleCommandComplete: () => undefined,
          handleError: (e: unknown) => finish(e),
          handleReadyForQuery: () => finish(failed)
        })
      })
    )
  )
