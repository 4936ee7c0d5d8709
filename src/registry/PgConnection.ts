// How the registry connects to PostgreSQL: one set of options and limits for every connection it holds
// (the pool's, the change feed's LISTEN connection), so each recovers by itself when the database
// restarts or the network drops (docs/scale-out.md, "the database fails").
//
// - Every client has an 'error' listener from the moment it exists. node-postgres emits 'error' on a
//   client that has no query running when the server ends the session (a restart sends FATAL 57P01 to
//   every idle connection); with no listener that is an uncaught exception and the registry dies. The
//   pool and @effect/sql-pg listen only while they use a client, leaving gaps (a LISTEN client between
//   its connect and its listener; a client after its user let go but before it is closed). The owner of
//   a client still learns of the failure: its next query fails, and the pool drops clients it cannot use.
// - A connection attempt gives up after CONNECT_MS, so no fiber waits on a database that does not answer.
// - TCP keepalive notices a peer that vanished without closing the connection (a partition, a host lost):
//   probes start after KEEPALIVE_MS of silence; the kernel's probe interval and count do the rest.
// - The server ends a transaction left idle for IDLE_IN_TRANSACTION_MS, so a replica cut off while it
//   holds a row lock (`FOR UPDATE`) cannot stall the others longer than that.
import pg, { type ClientConfig, type Pool } from "pg"

/** A connection attempt (TCP, startup, authentication) that takes longer fails. */
export const CONNECT_MS = 10_000
/** Silence on a connection before TCP keepalive probes start. */
export const KEEPALIVE_MS = 10_000
/** The server ends a session whose transaction stays idle this long (no statement of ours waits that long). */
export const IDLE_IN_TRANSACTION_MS = 60_000
/** Pool size per replica. */
export const MAX_CONNECTIONS = 16
/** A pooled connection unused this long is closed. */
export const IDLE_MS = 60_000

/** The options of every connection to the database at `url`. */
export const clientConfig = (url: string): ClientConfig => ({
  connectionString: url,
  application_name: "deploy-registry",
  connectionTimeoutMillis: CONNECT_MS,
  keepAlive: true,
  keepAliveInitialDelayMillis: KEEPALIVE_MS,
  idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS
})

const ignore = () => {}

/** A node-postgres client that never turns a server's goodbye into an uncaught exception (see above). */
export class RegistryPgClient extends pg.Client {
  constructor(config: ClientConfig) {
    super(config)
    this.on("error", ignore)
  }
}

/** The registry's connection pool on `url`: every client a RegistryPgClient; failed ones are dropped. */
export const makePool = (url: string): Pool => {
  const pool = new pg.Pool({ ...clientConfig(url), Client: RegistryPgClient, max: MAX_CONNECTIONS, idleTimeoutMillis: IDLE_MS })
  // An idle client that failed: the pool has already dropped it; nothing else to do.
  pool.on("error", ignore)
  return pool
}

/** The quoted channel name for LISTEN. */
export const identifier = (name: string): string => pg.escapeIdentifier(name)
