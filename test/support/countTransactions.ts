// A SqlClient whose transactions are counted (tests of write batching: HostStatus).
import type { SqlClient } from "@effect/sql"
import type { Effect } from "effect"

/** `sql` with `counter.transactions` bumped at each withTransaction. */
export const countTransactions = (sql: SqlClient.SqlClient, counter: { transactions: number }): SqlClient.SqlClient =>
  new Proxy(sql, {
    get: (target, p, receiver) =>
      p === "withTransaction"
        ? <A, E, R>(e: Effect.Effect<A, E, R>) => {
            counter.transactions++
            return target.withTransaction(e)
          }
        : Reflect.get(target, p, receiver)
  })
