import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Stream } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { writeFile, mkdtemp, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { startPostgres } from "./test/support/postgresServer.js"
import { migrate } from "./src/registry/Migrations.js"
import { make as makePg } from "./src/registry/PgBlobStore.js"
import { make as makeCache } from "./src/registry/BlobCache.js"

const main = async () => {
  const srv = await startPostgres()
  const dir = await mkdtemp(path.join(os.tmpdir(), "ms-"))
  try {
    const url = await srv.createDatabase()
    await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 16 }))
      const sql = Context.get(ctx, SqlClient.SqlClient)
      yield* Effect.orDie(migrate.pipe(Effect.provideService(SqlClient.SqlClient, sql)))
      const store = makePg(sql, yield* makeCache(dir, 1 << 30))
      const data = randomBytes(64 << 20)
      const hash = createHash("sha256").update(data).digest("hex") as any
      const tmp = path.join(dir, "in")
      yield* Effect.promise(() => writeFile(tmp, data))
      yield* Effect.orDie(sql.withTransaction(store.adopt(tmp, hash)))
      for (let r = 0; r < 4; r++) {
        const t0 = Date.now()
        const h = createHash("sha256")
        yield* Effect.orDie(Stream.runForEach(store.stream(hash), (c) => Effect.sync(() => h.update(c))))
        const ms = Date.now() - t0
        console.log("stream 64 MiB", ms, "ms", (64 / (ms / 1000)).toFixed(0), "MiB/s", h.digest("hex") === hash)
      }
    })))
  } finally { await srv.stop(); await rm(dir, { recursive: true, force: true }) }
}
main()
