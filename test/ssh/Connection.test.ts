import { it } from "@effect/vitest"
import { Effect, Scope, Exit } from "effect"
import { describe, expect } from "vitest"
import { connect, parseAddress } from "../../src/ssh/Connection.js"
import { useFakeServer } from "./fakeServer.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

const fake = useFakeServer()
const connected = fake.connect

describe("connect", () => {
  it.live("an error after ready does not crash the process, and releasing the scope still ends the client", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const client = yield* Scope.extend(connected(), scope)
      // With no 'error' listener, EventEmitter.emit("error") throws: this is what used to crash deployctl.
      expect(client.listenerCount("error")).toBeGreaterThan(0)
      expect(() => client.emit("error", new Error("read ECONNRESET"))).not.toThrow()
      expect(() => client.emit("error", new Error("again"))).not.toThrow()
      const closedBefore = fake.server.closedConnections()
      const closed = Effect.async<void>((resume) => void client.once("close", () => resume(Effect.void)))
      yield* Scope.close(scope, Exit.void)
      yield* closed
      // The server sees the connection end too.
      for (let i = 0; i < 100 && fake.server.closedConnections() === closedBefore; i++) yield* Effect.sleep("20 millis")
      expect(fake.server.closedConnections()).toBeGreaterThan(closedBefore)
    })
  )

  it.scoped("a refused host key is a HostKey error with the message", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        connect({
          host: "127.0.0.1",
          port: fake.server.port,
          username: "op",
          privateKey: generateEd25519().private,
          verifyHostKey: () => false,
          hostKeyRefused: (seen) => `refused ${seen}`
        })
      )
      expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toMatch(/HostKey.*refused SHA256:/)
    })
  )
})

describe("parseAddress", () => {
  it("host:port, [v6]:port, default port", () => {
    expect(parseAddress("127.0.0.1:2200")).toEqual({ host: "127.0.0.1", port: 2200 })
    expect(parseAddress("[::1]:22")).toEqual({ host: "::1", port: 22 })
    expect(parseAddress("reg")).toEqual({ host: "reg", port: 2022 })
    expect(parseAddress("reg:0")).toBeUndefined()
  })
})
