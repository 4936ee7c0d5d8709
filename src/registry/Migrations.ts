// The metadata schema, created and upgraded at start by @effect/sql's migrator. Append new
// migrations with the next number; never edit one that has shipped.
//
// States are append-only: a configuration row points at its current state; every change inserts a
// new state with a copy of its layers (component, version, blob hash, version ctime) so history and
// rollback stay readable after retention removed a version. Names compare in byte order of their
// UTF-8 text (SQLite's BINARY collation). The same migrations run on SQLite and PostgreSQL: what
// differs (id columns, collation, PostgreSQL's blob tables) comes from SqlDialect.ts.
import { Migrator, SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { ddl, isPostgres } from "./SqlDialect.js"

const initial = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const d = ddl(sql)
  yield* sql`CREATE TABLE versions (
    id ${d.id},
    component ${d.text} NOT NULL,
    version ${d.text} NOT NULL,
    hash ${d.text} NOT NULL,
    ctime ${d.text} NOT NULL,
    UNIQUE (component, version)
  )`
  yield* sql`CREATE INDEX versions_hash ON versions (hash)`
  // On PostgreSQL the blobs live in the database too (PgBlobStore.ts): one row per blob, its bytes in
  // 1 MiB chunks. STORAGE EXTERNAL: layers are gzip already, compressing them again only costs CPU.
  if (isPostgres(sql)) {
    yield* sql`CREATE TABLE blobs (
      hash ${d.text} PRIMARY KEY,
      size BIGINT NOT NULL,
      created ${d.text} NOT NULL
    )`
    yield* sql`CREATE TABLE blob_chunks (
      hash ${d.text} NOT NULL REFERENCES blobs (hash) ON DELETE CASCADE,
      n INTEGER NOT NULL,
      data BYTEA NOT NULL,
      PRIMARY KEY (hash, n)
    )`
    yield* sql`ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL`
  }
  // AUTOINCREMENT ids: a configuration deleted and created again starts a fresh history.
  yield* sql`CREATE TABLE configurations (
    id ${d.id},
    name ${d.text} NOT NULL UNIQUE,
    state_id INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE states (
    id ${d.id},
    configuration_id INTEGER NOT NULL,
    time ${d.text} NOT NULL,
    hash ${d.text} NOT NULL,
    who_user ${d.text} NOT NULL,
    who_fingerprint ${d.text} NOT NULL,
    who_comment ${d.text} NOT NULL
  )`
  yield* sql`CREATE INDEX states_configuration ON states (configuration_id, id)`
  yield* sql`CREATE TABLE state_layers (
    state_id INTEGER NOT NULL REFERENCES states (id),
    position INTEGER NOT NULL,
    component ${d.text} NOT NULL,
    version ${d.text} NOT NULL,
    hash ${d.text} NOT NULL,
    ctime ${d.text} NOT NULL,
    PRIMARY KEY (state_id, position)
  )`
  yield* sql`CREATE INDEX state_layers_version ON state_layers (component, version)`
})

// Agent sessions (issue 17): one row per configuration and host, the host's last word. `host` is the
// agent's -host, or the key fingerprint of a host that only polls (kind 'poll'). `since`: when `hash`
// became what it is. Whether a host is connected is not stored: live sessions know it.
const hostStatus = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const d = ddl(sql)
  yield* sql`CREATE TABLE host_status (
    configuration ${d.text} NOT NULL,
    host ${d.text} NOT NULL,
    kind ${d.text} NOT NULL,
    fingerprint ${d.text} NOT NULL,
    address ${d.text} NOT NULL,
    agent_version ${d.text} NOT NULL DEFAULT '',
    hash ${d.text} NOT NULL DEFAULT '',
    target ${d.text} NOT NULL DEFAULT '',
    outcome ${d.text} NOT NULL DEFAULT '',
    reason ${d.text} NOT NULL DEFAULT '',
    lines ${d.text} NOT NULL DEFAULT '[]',
    started ${d.text} NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0,
    since ${d.text} NOT NULL,
    last_report ${d.text} NOT NULL DEFAULT '',
    last_seen ${d.text} NOT NULL,
    PRIMARY KEY (configuration, host)
  )`
})

// Operators' SSHSIG signatures of states (Signatures.ts): one per signing key and state, kept with the
// state (states are never removed, so signatures survive retention and rollback).
const signatures = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const d = ddl(sql)
  yield* sql`CREATE TABLE signatures (
    state_id INTEGER NOT NULL REFERENCES states (id),
    fingerprint ${d.text} NOT NULL,
    signed_at ${d.text} NOT NULL,
    signature ${d.text} NOT NULL,
    added_at ${d.text} NOT NULL,
    added_by_fingerprint ${d.text} NOT NULL,
    PRIMARY KEY (state_id, fingerprint)
  )`
})

// Staged rollouts (Rollouts.ts): the whole RolloutState as JSON (RolloutPlan's plain data), the target
// layers (a state that is not current until the rollout completes), who started it; at most one
// active rollout per configuration. rollout_events: what each step changed, for -status and history.
const rollouts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const d = ddl(sql)
  yield* sql`CREATE TABLE rollouts (
    id ${d.id},
    configuration ${d.text} NOT NULL,
    active INTEGER NOT NULL,
    state ${d.text} NOT NULL,
    target_hash ${d.text} NOT NULL,
    target_layers ${d.text} NOT NULL,
    started ${d.text} NOT NULL,
    who_user ${d.text} NOT NULL,
    who_fingerprint ${d.text} NOT NULL,
    who_comment ${d.text} NOT NULL
  )`
  yield* sql`CREATE UNIQUE INDEX rollouts_active ON rollouts (configuration) WHERE active = 1`
  yield* sql`CREATE TABLE rollout_events (${d.rowid}
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
    time ${d.text} NOT NULL,
    text ${d.text} NOT NULL
  )`
  yield* sql`CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id)`
})

// Rollouts, second part (docs/rollouts.md "Storage"): the target is a stored state from the start
// (target_state_id: pending, not current, until the rollout completes; signable meanwhile), the phase as
// a column (which states were never current; metrics), and who made each step (actor: an operator's
// label, or "driver" for the registry's own steps), for `history`.
const rolloutEvents = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const d = ddl(sql)
  yield* sql`ALTER TABLE rollouts ADD COLUMN target_state_id INTEGER NOT NULL DEFAULT 0`
  yield* sql`ALTER TABLE rollouts ADD COLUMN phase ${d.text} NOT NULL DEFAULT ''`
  yield* sql`CREATE INDEX rollouts_target ON rollouts (target_state_id)`
  yield* sql`ALTER TABLE rollout_events ADD COLUMN actor ${d.text} NOT NULL DEFAULT ''`
})

// Replicas on PostgreSQL (ReplicaSessions.ts): each replica's heartbeat on the database's clock and the
// watch sessions it holds, for "connected" across replicas. PostgreSQL only: SQLite is one process,
// which knows its own sessions, and has no clock type (timestamptz, now()) for a heartbeat; so
// Migrations.test compares the other tables across dialects. IF NOT EXISTS: replicas before this
// migration created them at start; their id columns then get the byte order every text column has.
const replicas = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  if (!isPostgres(sql)) return
  const d = ddl(sql)
  yield* sql`CREATE TABLE IF NOT EXISTS replicas (id ${d.text} PRIMARY KEY, heartbeat TIMESTAMPTZ NOT NULL DEFAULT now())`
  yield* sql`CREATE TABLE IF NOT EXISTS replica_sessions (
    configuration ${d.text} NOT NULL,
    host ${d.text} NOT NULL,
    replica ${d.text} NOT NULL,
    PRIMARY KEY (configuration, host, replica)
  )`
  yield* sql`ALTER TABLE replicas ALTER COLUMN id TYPE ${d.text}`
  yield* sql`ALTER TABLE replica_sessions ALTER COLUMN replica TYPE ${d.text}`
})

// Uploads streamed into PostgreSQL as they arrive (PgUploadStage.ts): a staged upload's chunks are
// blob_chunks rows keyed by its id (`upload`), invisible to readers (no `blobs` row names them) until
// addver's transaction links them to the blob (an UPDATE of their key; the bytes are not rewritten).
// So blob_chunks.hash no longer references blobs (a staged key is not a blob): removing a blob deletes
// its chunks itself. Deleting a staged upload (abandoned, or swept by the janitor) deletes its chunks.
// `hash` is set when the upload completes; times are the database's clock (replicas' clocks may differ).
// PostgreSQL only (test/registry/Migrations.test.ts compares the other tables across dialects).
const stagedUploads = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  if (!isPostgres(sql)) return
  const d = ddl(sql)
  yield* sql`CREATE TABLE staged_uploads (
    id ${d.text} PRIMARY KEY,
    hash ${d.text},
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed TIMESTAMPTZ
  )`
  yield* sql`CREATE INDEX staged_uploads_hash ON staged_uploads (hash)`
  yield* sql`ALTER TABLE blob_chunks DROP CONSTRAINT IF EXISTS blob_chunks_hash_fkey`
  yield* sql`ALTER TABLE blob_chunks ADD COLUMN upload ${d.text} REFERENCES staged_uploads (id) ON DELETE CASCADE`
  yield* sql`CREATE INDEX blob_chunks_upload ON blob_chunks (upload) WHERE upload IS NOT NULL`
})

export const migrations = Migrator.fromRecord({
  "1_initial": initial,
  "2_host_status": hostStatus,
  "3_signatures": signatures,
  "4_rollouts": rollouts,
  "5_rollout_events": rolloutEvents,
  "6_replicas": replicas,
  "7_staged_uploads": stagedUploads
})

const migrateNow = Migrator.make({})({ loader: migrations, table: "schema_migrations" })

/**
 * Runs the pending migrations (in one transaction); returns the ones applied. On PostgreSQL, replicas
 * starting together would race to create the migrator's table (its table lock covers only what comes
 * after): it is created first, the same DDL as the migrator's, under an advisory lock.
 */
export const migrate = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  isPostgres(sql)
    ? Effect.zipRight(
        sql.withTransaction(
          Effect.zipRight(
            sql`SELECT pg_advisory_xact_lock(hashtext('deploy-registry migrations'))`,
            sql`CREATE TABLE IF NOT EXISTS schema_migrations (
              migration_id integer primary key,
              created_at timestamp with time zone not null default now(),
              name text not null
            )`
          )
        ),
        migrateNow
      )
    : migrateNow
)
