// Sockets that never finish the SSH handshake against the built registry: they must not stop a real
// client, and the registry drops them within its 20 s handshake limit. Waits that limit out, so it runs in
// the reliability tier (`npm run test:reliability`; CI runs it too).
import * as net from "node:net"
import { rmSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { helpWorks } from "./lib/client.js"
import { waitFor } from "./lib/proc.js"

let reg: TestRegistry

beforeAll(async () => {
  reg = await startRegistry()
})

afterAll(async () => {
  await reg?.stop("SIGKILL")
  if (reg) rmSync(reg.dir, { recursive: true, force: true })
})

describe("sockets that never finish the SSH handshake", () => {
  it("500 of them (from 5 other loopback addresses) do not stop a real client, and the registry drops them", async () => {
    const sockets: Array<net.Socket> = []
    let closed = 0
    await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        new Promise<void>((resolve, reject) => {
          // 100 from each address: under -max-conns-per-source (128), which Limits.test.ts covers on its own.
          const s = net.connect({ host: "127.0.0.1", port: reg.port, localAddress: `127.0.0.${2 + (i % 5)}` }, () => {
            if (i % 3 === 1) s.write("SSH-2.0-") // a partial banner
            if (i % 3 === 2) s.write("SSH-2.0-slowloris\r\n") // a banner, then nothing
            resolve()
          })
          s.on("error", () => undefined)
          s.resume() // read, so that the server's close is seen
          s.once("close", () => closed++)
          s.once("error", (e) => (sockets.includes(s) ? undefined : reject(e)))
          sockets.push(s)
        })
      )
    )
    try {
      expect(closed).toBe(0)
      // A real client gets through while all 500 hang on.
      expect(await helpWorks(reg)).toBe(true)
      // Dropped within the 20 s handshake limit (plus slack for a loaded machine).
      expect(await waitFor(() => closed === 500, 30_000, 200)).toBe(true)
      expect(await helpWorks(reg)).toBe(true)
    } finally {
      for (const s of sockets) s.destroy()
    }
  }, 90_000)
})
