// The canary for src/ssh/Ssh2Internals.ts: every private field of ssh2 we read is where we expect it on
// the installed ssh2, and has the value that makes our fast paths run. An ssh2 upgrade that moves one
// fails here, by name, instead of quietly slowing transfers down or leaving requests unanswered.
import { it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect } from "vitest"
import pkg from "../../package.json" with { type: "json" }
import { generateEd25519 } from "../../src/ssh/KeyGen.js"
import { openSftp } from "../../src/ssh/Sftp.js"
import { channelOpen, maxReadLen, maxWriteLen } from "../../src/ssh/Ssh2Internals.js"
import { connectFake, type FakeServer, startFakeServer } from "./fakeServer.js"

let server: FakeServer
beforeAll(async () => {
  server = await startFakeServer()
})
afterAll(() => server.stop())

describe("ssh2 internals", () => {
  it("ssh2 is pinned to one exact version, and that version is installed", () => {
    const pinned = (pkg.dependencies as Record<string, string>)["ssh2"]!
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/)
    const installed = JSON.parse(readFileSync(createRequire(import.meta.url).resolve("ssh2/package.json"), "utf8")) as { version: string }
    expect(installed.version).toBe(pinned)
  })

  it.scopedLive("client SFTP: large request lengths with an OpenSSH-named server, channel states while open and after close", () =>
    Effect.gen(function* () {
      const client = yield* connectFake(server, generateEd25519().private)
      const sftp = yield* openSftp(client)
      // 32 KiB is ssh2's fallback: anything larger means the fields were read.
      expect(maxReadLen(sftp)).toBeGreaterThan(32 * 1024)
      expect(maxWriteLen(sftp)).toBeGreaterThan(32 * 1024)
      expect(channelOpen(sftp)).toBe(true)
      const closed = Effect.async<void>((resume) => void sftp.once("close", () => resume(Effect.void)))
      client.end()
      yield* closed
      expect(channelOpen(sftp)).toBe(false)
    })
  )
})
