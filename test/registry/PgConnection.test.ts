// The registry's PostgreSQL connections (src/registry/PgConnection.ts) against a real server: a
// server's goodbye that arrives while nobody listens on the client (a restart ends every session with
// FATAL 57P01) must not become an uncaught exception: that killed registries when the database
// restarted while they were busy.
import type { Client } from "pg"
import type { Socket } from "node:net"
import { describe, expect, it } from "vitest"
import { clientConfig, makePool, RegistryPgClient } from "../../src/registry/PgConnection.js"
import { postgresMissing, usePostgres } from "../support/postgres.js"

const socketOf = (c: Client) => (c as unknown as { connection: { stream: Socket } }).connection.stream

describe.skipIf(postgresMissing() !== undefined)("PostgreSQL connections", () => {
  const server = usePostgres()

  it("a connection whose server died as it connected fails its queries; the process does not crash", async () => {
    const url = await server().createDatabase()
    const client = new RegistryPgClient(clientConfig(url))
    // Hold what the server sends: its startup answer, then (after the kill) its FATAL goodbye arrive
    // together, as they do on a registry that was busy, so the goodbye is read before `connect()`'s
    // caller runs again. With no 'error' listener on the client at that moment, this test process dies.
    const connected = client.connect()
    socketOf(client).pause()
    await new Promise((r) => setTimeout(r, 500))
    await server().kill("SIGKILL")
    socketOf(client).resume()
    await connected
    await expect(client.query("SELECT 1")).rejects.toThrow()
    await client.end()
    await server().restart()
  })

  it("the pool's clients are RegistryPgClients, and the pool serves again after a restart", async () => {
    const url = await server().createDatabase()
    const pool = makePool(url)
    const client = await pool.connect()
    expect(client).toBeInstanceOf(RegistryPgClient)
    client.release()
    await server().kill("SIGKILL")
    await server().restart()
    // The idle client died with the server; the pool drops it and connects again.
    let answered = false
    for (let i = 0; i < 50 && !answered; i++) {
      answered = await pool.query("SELECT 1").then(() => true, () => false)
      if (!answered) await new Promise((r) => setTimeout(r, 100))
    }
    expect(answered).toBe(true)
    await pool.end()
  })
})
