// The metadata schema, created and upgraded at start by @effect/sql's migrator. Append new
// migrations with the next number; never edit one that has shipped.
//
// States are append-only: a configuration row points at its current state; every change inserts a
// new state with a copy of its layers (component, version, blob hash, version ctime) so history and
// rollback stay readable after retention removed a version. Names compare with SQLite's BINARY
// collation, i.e. byte order of their UTF-8 text.
import { Migrator, SqlClient } from "@effect/sql"
import { Effect } from "effect"

const initial = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    hash TEXT NOT NULL,
    ctime TEXT NOT NULL,
    UNIQUE (component, version)
  )`
  yield* sql`CREATE INDEX versions_hash ON versions (hash)`
  // AUTOINCREMENT ids: a configuration deleted and created again starts a fresh history.
  yield* sql`CREATE TABLE configurations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    state_id INTEGER NOT NULL
  )`
  yield* sql`CREATE TABLE states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    configuration_id INTEGER NOT NULL,
    time TEXT NOT NULL,
    hash TEXT NOT NULL,
    who_user TEXT NOT NULL,
    who_fingerprint TEXT NOT NULL,
    who_comment TEXT NOT NULL
  )`
  yield* sql`CREATE INDEX states_configuration ON states (configuration_id, id)`
  yield* sql`CREATE TABLE state_layers (
    state_id INTEGER NOT NULL REFERENCES states (id),
    position INTEGER NOT NULL,
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    hash TEXT NOT NULL,
    ctime TEXT NOT NULL,
    PRIMARY KEY (state_id, position)
  )`
  yield* sql`CREATE INDEX state_layers_version ON state_layers (component, version)`
})

// Agent sessions (issue 17): one row per configuration and host, the host's last word. `host` is the
// agent's -host, or the key fingerprint of a host that only polls (kind 'poll'). `since`: when `hash`
// became what it is. Whether a host is connected is not stored: live sessions know it.
const hostStatus = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE host_status (
    configuration TEXT NOT NULL,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    address TEXT NOT NULL,
    agent_version TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    lines TEXT NOT NULL DEFAULT '[]',
    started TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0,
    since TEXT NOT NULL,
    last_report TEXT NOT NULL DEFAULT '',
    last_seen TEXT NOT NULL,
    PRIMARY KEY (configuration, host)
  )`
})

// Operators' SSHSIG signatures of states (Signatures.ts): one per signing key and state, kept with the
// state (states are never removed, so signatures survive retention and rollback).
const signatures = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE signatures (
    state_id INTEGER NOT NULL REFERENCES states (id),
    fingerprint TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    added_at TEXT NOT NULL,
    added_by_fingerprint TEXT NOT NULL,
    PRIMARY KEY (state_id, fingerprint)
  )`
})

// Staged rollouts (Rollouts.ts): the whole RolloutState as JSON (RolloutPlan's plain data), the target
// layers (a state that is not current until the rollout completes), who started it; at most one
// active rollout per configuration. rollout_events: what each step changed, for -status and history.
const rollouts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    configuration TEXT NOT NULL,
    active INTEGER NOT NULL,
    state TEXT NOT NULL,
    target_hash TEXT NOT NULL,
    target_layers TEXT NOT NULL,
    started TEXT NOT NULL,
    who_user TEXT NOT NULL,
    who_fingerprint TEXT NOT NULL,
    who_comment TEXT NOT NULL
  )`
  yield* sql`CREATE UNIQUE INDEX rollouts_active ON rollouts (configuration) WHERE active = 1`
  yield* sql`CREATE TABLE rollout_events (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
    time TEXT NOT NULL,
    text TEXT NOT NULL
  )`
  yield* sql`CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id)`
})

// Rollouts, second part (docs/rollouts.md "Storage"): the target is a stored state from the start
// (target_state_id: pending, not current, until the rollout completes; signable meanwhile), the phase as
// a column (which states were never current; metrics), and who made each step (actor: an operator's
// label, or "driver" for the registry's own steps), for `history`.
const rolloutEvents = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE rollouts ADD COLUMN target_state_id INTEGER NOT NULL DEFAULT 0`
  yield* sql`ALTER TABLE rollouts ADD COLUMN phase TEXT NOT NULL DEFAULT ''`
  yield* sql`CREATE INDEX rollouts_target ON rollouts (target_state_id)`
  yield* sql`ALTER TABLE rollout_events ADD COLUMN actor TEXT NOT NULL DEFAULT ''`
})

export const migrations = Migrator.fromRecord({
  "1_initial": initial,
  "2_host_status": hostStatus,
  "3_signatures": signatures,
  "4_rollouts": rollouts,
  "5_rollout_events": rolloutEvents
})

/** Runs the pending migrations (in one transaction); returns the ones applied. */
export const migrate = Migrator.make({})({ loader: migrations, table: "schema_migrations" })
