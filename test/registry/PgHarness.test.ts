import { describe, expect, it } from "vitest"
import { postgresMissing, usePostgres } from "../support/postgres.js"
describe.skipIf(postgresMissing() !== undefined)("test/support/postgres.ts", () => {
  const pg = usePostgres()
  it("creates a database per call and comes back after a kill -9", async () => {
    const a = await pg().createDatabase()
    const b = await pg().createDatabase()
    expect(a).not.toBe(b)
    await pg().kill("SIGKILL")
    await pg().restart()
    await pg().createDatabase()
  }, 60000)
})
