// A watch session whose document read fails (the database away): the agent is not told `deleted`, and
// hears the state at the next event that reads; a configuration really gone still gives `deleted`. An
// in-process SshServer (real ssh2 server and client, real ChangeFeed) with a test Rollouts layer whose
// reads fail on demand: the read is what WatchSession asks Rollouts for (WatchFanout.ts).
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { createHash } from "node:crypto"
import { promises as fs } from "node:fs"
import type { Client } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ConfigurationDocument, DocumentLayer } from "../../src/domain/Document.js"
import { StorageError } from "../../src/domain/Errors.js"
import type { Sha256 } from "../../src/domain/Names.js"
import { Auth } from "../../src/registry/Auth.js"
import { BlobStoreLive } from "../../src/registry/BlobStore.js"
import { ChangeFeed, ChangeFeedLive } from "../../src/registry/ChangeFeed.js"
import { CommandInterpreter } from "../../src/registry/CommandInterpreter.js"
import { HostStatus } from "../../src/registry/HostStatus.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { Rollouts } from "../../src/registry/Rollouts.js"
import { SignaturesNone } from "../../src/registry/Signatures.js"
import { SshServer, SshServerLive } from "../../src/registry/SshServer.js"
import { Storage } from "../../src/registry/Storage.js"
import { UploadsLive } from "../../src/registry/Uploads.js"
import { parseAuthorizedKeys } from "../../src/ssh/AuthorizedKeys.js"
import { HostKey, loadOrCreate } from "../../src/ssh/HostKey.js"
import { jsonLinesExec } from "../support/jsonLines.js"
import { tempDir } from "../support/keys.js"
import { connectClient } from "../support/registry.js"
import { generateKey } from "../support/sshServer.js"

const sha = (s: string) => createHash("sha256").update(s).digest("hex") as Sha256
const doc = (version: string) =>
  new ConfigurationDocument({
    Name: "c" as never,
    Mtime: new Date("2026-01-02T03:04:05.678Z"),
    Hash: sha(`doc ${version}`),
    Layers: [new DocumentLayer({ Name: "code" as never, Version: version as never, File: `files/${sha(version)}`, Hash: sha(version), Ctime: new Date("2026-01-01T00:00:00Z") })]
  })

/** What the test Rollouts serves every host, and whether its reads fail. */
const served: { doc: Option.Option<ConfigurationDocument>; failing: boolean } = { doc: Option.some(doc("v1")), failing: false }
const read = Effect.suspend(() =>
  served.failing ? Effect.fail(new StorageError({ reason: "database failure", cause: new Error("connection refused") })) : Effect.succeed(served.doc)
)
const TestRollouts = Layer.mock(Rollouts, {
  document: () => read,
  serving: () => Effect.map(read, (d) => () => d),
  live: () => false,
  summary: () => undefined,
  wake: Effect.void
})

const agentKey = generateKey("web1@test")
let dir = ""
let port = 0
let publish: ChangeFeed["Type"]["publish"]
const scope = Effect.runSync(Scope.make())
const clients: Array<Client> = []

beforeAll(async () => {
  dir = await tempDir("watchsession-")
  const hostKey = await Effect.runPromise(loadOrCreate(dir))
  const deps = Layer.mergeAll(
    Layer.succeed(HostKey, hostKey),
    Auth.fromKeys([], parseAuthorizedKeys(agentKey.publicLine).keys),
    Layer.mock(CommandInterpreter, {}),
    SignaturesNone,
    Layer.mergeAll(UploadsLive, BlobStoreLive).pipe(Layer.provide(RegistryConfig.make(dir))),
    Layer.mock(Storage, { generation: () => undefined }),
    ChangeFeedLive,
    Layer.mock(HostStatus, { attach: () => Effect.void, report: () => Effect.void, documentRead: () => Effect.void }),
    TestRollouts
  )
  const ctx = await Effect.runPromise(
    Layer.buildWithScope(Layer.merge(SshServerLive({ host: "127.0.0.1", port: 0, deadline: "1 hour" }), deps).pipe(Layer.provide(deps)), scope)
  )
  port = Context.get(ctx, SshServer).address.port
  publish = Context.get(ctx, ChangeFeed).publish
}, 30_000)
afterAll(async () => {
  for (const c of clients) c.end()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await fs.rm(dir, { recursive: true, force: true })
})

const watch = async () => {
  const c = await connectClient(port, "deploy-agent", { privateKey: agentKey.privateKey })
  c.on("error", () => undefined)
  clients.push(c)
  return jsonLinesExec(c, "watch -name c -host web1 -version 1")
}

const event = (e: Parameters<typeof publish>[0]) => Effect.runPromise(publish(e))

describe("a watch session whose document read fails", () => {
  it("sends nothing for that event (not `deleted`), the state at the next one; a real deletion is still sent", async () => {
    served.doc = Option.some(doc("v1"))
    served.failing = false
    const w = await watch()
    await w.next((l) => l.type === "state" && l.hash === doc("v1").Hash)

    // The database is away: a rollout step and a resync each read, and fail.
    served.failing = true
    await event({ _tag: "Served", name: "c" })
    await event({ _tag: "Resync" })
    // It is back, with a new state to serve.
    served.failing = false
    served.doc = Option.some(doc("v2"))
    await event({ _tag: "Served", name: "c" })
    await w.next((l) => l.type === "state" && l.hash === doc("v2").Hash)

    // The configuration is gone (the read says so): that is a deletion.
    served.doc = Option.none()
    await event({ _tag: "Served", name: "c" })
    await w.next((l) => l.type === "deleted")
    expect(w.lines.filter((l) => l.type !== "ping").map((l) => `${l.type} ${String(l.hash ?? "")}`)).toEqual([
      `state ${doc("v1").Hash}`, `state ${doc("v2").Hash}`, "deleted "
    ])
    w.channel.end()
  }, 30_000)

  it("when even the first read fails, closes the session without a line: the agent reconnects and reads again", async () => {
    served.doc = Option.some(doc("v1"))
    served.failing = true
    const w = await watch()
    await w.closed
    expect(w.lines.filter((l) => l.type !== "ping")).toEqual([])
    served.failing = false
    const again = await watch()
    await again.next((l) => l.type === "state" && l.hash === doc("v1").Hash)
    again.channel.end()
  }, 30_000)
})
