// Benchmark: a registry with its blobs in PostgreSQL (-db) against the SQLite/disk registry, same run,
// same files. Upload = `deployctl addver -file` (SFTP upload + check + addver; on PostgreSQL the upload
// also streams the blob's chunks into staged rows as it arrives, which addver's transaction links to
// the blob); download = OpenSSH `sftp get /files/<sha>` as deploy-agent: from the replica that took the
// upload (its cache holds the blob) and from a fresh replica on the same database (cold cache: the
// chunks come out of PostgreSQL by binary COPY and are served while they fill the cache).
//   node --import tsx bench/pgblobs.ts [-size 64M] [-runs 3] [-cipher aes128-gcm@openssh.com]
import { rm } from "node:fs/promises"
import * as path from "node:path"
import { startPostgres } from "../test/support/postgresServer.js"
import { tempDir } from "../test/support/keys.js"
import { randomTarGz } from "./lib/data.js"
import { parseFlags } from "./lib/flags.js"
import { Cleanup, log, runStandalone, type Bench } from "./lib/main.js"
import { mbps, sftpGet, type Endpoint } from "./lib/openssh.js"
import { deployctl, requirePrograms, sshExec, startRegistry, type Registry } from "./lib/registry.js"
import { environment, row, type Row } from "./lib/report.js"
import { interleave } from "./lib/stats.js"

export const pgblobs: Bench = async (argv) => {
  const f = parseFlags(argv, ["size", "runs", "cipher"])
  const size = f.size("size", "64M")
  const runs = f.int("runs", 3)
  const cipher = f.str("cipher", "aes128-gcm@openssh.com")
  requirePrograms("registry", "ctl")
  const started = Date.now()
  const cleanup = new Cleanup()
  const rows: Row[] = []
  try {
    // A different file per upload round: a blob already stored would skip the write being measured.
    const files = await Promise.all(Array.from({ length: runs }, (_, i) => randomTarGz(size, `pg${i}`)))
    const bytes = files[0]!.bytes
    const work = await tempDir("bench-pgblobs-")
    cleanup.add(() => rm(work, { recursive: true, force: true }))
    const pg = await startPostgres()
    cleanup.add(() => pg.stop())
    const url = await pg.createDatabase()
    const disk = await startRegistry({ cipher })
    cleanup.add(() => disk.stop())
    const onPg = await startRegistry({ cipher, extraArgs: ["-db", url] })
    cleanup.add(() => onPg.stop())

    const agentEp = (r: Registry): Endpoint => ({ port: r.port, user: "deploy-agent", opts: r.clientOpts("agent") })
    const addver = async (r: Registry, i: number) => {
      const res = await deployctl(r, ["addver", "-name", "big", "-version", `v${i}`, "-file", files[i]!.path])
      if (res.code !== 0) throw new Error(`addver exited ${res.code}: ${(res.stdout + res.stderr).trim()}`)
      return mbps(bytes, res.ms)
    }
    log(`pgblobs: ${runs} rounds of deployctl addver, ${(bytes / 2 ** 20).toFixed(0)} MiB each, disk vs PostgreSQL`)
    const up = await interleave(runs, { disk: (i) => addver(disk, i), postgres: (i) => addver(onPg, i) }, log)
    for (const r of [disk, onPg]) await sshExec(r, "addconf -name bench -layer big:v0")

    const local = path.join(work, "got.tar.gz")
    const get = async (r: Registry) => {
      const res = await sftpGet(agentEp(r), `/files/${files[0]!.sha256}`, local)
      if (res.code !== 0) throw new Error(`sftp get exited ${res.code}: ${res.stderr.trim()}`)
      await rm(local, { force: true })
      return mbps(bytes, res.ms)
    }
    const down = await interleave(runs, {
      disk: () => get(disk),
      "postgres, cached": () => get(onPg),
      "postgres, cold cache": async () => {
        const fresh = await startRegistry({ cipher, extraArgs: ["-db", url] })
        try {
          return await get(fresh)
        } finally {
          await fresh.stop()
        }
      }
    }, log)

    rows.push(row({ metric: "deployctl addver → disk registry", unit: "MB/s", ours: up.disk }))
    rows.push(row({ metric: "deployctl addver → PostgreSQL blobs", unit: "MB/s", referenceName: "disk registry", reference: up.disk, ours: up.postgres,
      note: "the upload streams the blob's 1 MiB chunks into PostgreSQL as it arrives (held back when the database lags); addver links them" }))
    rows.push(row({ metric: "sftp get ← disk registry", unit: "MB/s", ours: down.disk }))
    rows.push(row({ metric: "sftp get ← PostgreSQL replica, cached", unit: "MB/s", referenceName: "disk registry", reference: down.disk, ours: down["postgres, cached"] }))
    rows.push(row({ metric: "sftp get ← PostgreSQL replica, cold cache", unit: "MB/s", referenceName: "disk registry", reference: down.disk, ours: down["postgres, cold cache"],
      note: "a fresh replica: the first read is served while it fills the cache from PostgreSQL (its end only once the hash matched)" }))
    for (const r of rows) if (r.ratio !== undefined) log(`pgblobs: ${r.metric}: ${r.ours.median.toFixed(1)} MB/s, ratio to disk ${r.ratio.toFixed(2)}`)
    return {
      name: "pgblobs",
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      environment: await environment(),
      settings: { size: bytes, runs, cipher },
      rows
    }
  } finally {
    await cleanup.run()
  }
}

runStandalone(import.meta.url, pgblobs)
