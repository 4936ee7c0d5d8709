// The part of node-postgres (`pg`, a dependency of @effect/sql-pg; no @types/pg here) PgConnection.ts uses.
declare module "pg" {
  import type { EventEmitter } from "node:events"

  export interface ClientConfig {
    readonly connectionString?: string | undefined
    readonly host?: string | undefined
    readonly port?: number | undefined
    readonly user?: string | undefined
    readonly password?: string | undefined
    readonly database?: string | undefined
    readonly application_name?: string | undefined
    readonly connectionTimeoutMillis?: number | undefined
    readonly keepAlive?: boolean | undefined
    readonly keepAliveInitialDelayMillis?: number | undefined
    readonly idle_in_transaction_session_timeout?: number | undefined
  }
  export interface PoolConfig extends ClientConfig {
    readonly max?: number | undefined
    readonly idleTimeoutMillis?: number | undefined
    readonly Client?: new (config: ClientConfig) => Client
  }
  export interface Notification {
    readonly channel: string
    readonly payload?: string | undefined
  }
  export class Client extends EventEmitter {
    constructor(config: ClientConfig)
    connect(): Promise<void>
    query(text: string): Promise<unknown>
    end(): Promise<void>
  }
  export class Pool extends EventEmitter {
    constructor(config: PoolConfig)
    connect(): Promise<Client & { release(err?: unknown): void }>
    query(text: string): Promise<unknown>
    end(): Promise<void>
  }
  const pg: { readonly Client: typeof Client; readonly Pool: typeof Pool; readonly escapeIdentifier: (s: string) => string }
  export default pg
}
