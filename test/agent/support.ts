// Test Layers for the agent's cycle: an in-memory registry and a recording script runner; the
// cache, unpacker and state file are the real ones on a temp dir (they are fast and local).
import type { ServedSignature } from "../../src/agent/TrustPolicy.js"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type { AgentSettings } from "../../src/agent/AgentConfig.js"
import { AgentConfig } from "../../src/agent/AgentConfig.js"
import { AgentLogMemory } from "../../src/agent/AgentLog.js"
import { Cache, makeCache } from "../../src/agent/Cache.js"
import { checkDocument, RegistryClient, type Sink } from "../../src/agent/RegistryClient.js"
import { makeRetryGate, RetryGate } from "../../src/agent/RetryGate.js"
import { ScriptRunner, type ScriptRun } from "../../src/agent/ScriptRunner.js"
import { makeStateFile, StateFile } from "../../src/agent/StateFile.js"
import { makeUnpacker, Unpacker } from "../../src/agent/Unpacker.js"
import { RegistryError, ScriptFailed } from "../../src/domain/AgentErrors.js"
import { configHash } from "../../src/domain/ConfigHash.js"
import { type ConfigurationDocument, decodeDocument } from "../../src/domain/Document.js"
import type { DocumentError } from "../../src/domain/Errors.js"
import { type EntrySpec, sha256, tarGz } from "./fixtures.js"

export interface Blob {
  readonly name: string
  readonly version: string
  readonly bytes: Buffer
  readonly hash: string
}

export const blob = (name: string, version: string, entries: ReadonlyArray<EntrySpec>): Blob => {
  const bytes = tarGz(entries)
  return { name, version, bytes, hash: sha256(bytes) }
}

/** The registry's JSON document for `name` made of `layers`. */
export const documentText = (name: string, layers: ReadonlyArray<Blob>): string =>
  JSON.stringify(
    {
      Name: name,
      Mtime: "2026-11-26T06:00:00.5Z",
      Hash: configHash(layers.map((l) => l.hash)),
      Layers: layers.map((l) => ({ Name: l.name, Version: l.version, File: `files/${l.hash}`, Hash: l.hash, Ctime: "2026-11-26T05:00:00Z" }))
    },
    null,
    "\t"
  )

export interface FakeRegistry {
  /** Current document per configuration name. */
  docs: Map<string, string>
  blobs: Map<string, Buffer>
  /** Served signatures per configuration name and state hash (what /signatures/<name>.json lists). */
  signatures: Map<string, { hash: string; list: Array<ServedSignature> }>
  downloads: Array<string>
  connects: number
  /** "interrupted": the connection attempt ends by interruption from within (a joined fiber that was interrupted). */
  mode: "ok" | "down" | "interrupted" | "hang-document" | "hang-download" | "corrupt"
  /** Completed when a hanging operation has started (so a test can interrupt right there). */
  reached: Deferred.Deferred<void>
}

export const publish = (reg: FakeRegistry, name: string, layers: ReadonlyArray<Blob>) => {
  for (const l of layers) reg.blobs.set(l.hash, l.bytes)
  reg.docs.set(name, documentText(name, layers))
  return configHash(layers.map((l) => l.hash))
}

export const makeFakeRegistry = Effect.map(
  Deferred.make<void>(),
  (reached): FakeRegistry => ({ docs: new Map(), blobs: new Map(), signatures: new Map(), downloads: [], connects: 0, mode: "ok", reached })
)

const fakeRegistryLayer = (reg: FakeRegistry) =>
  Layer.succeed(RegistryClient, {
    connect: Effect.suspend(() => {
      reg.connects++
      if (reg.mode === "down") return Effect.fail(new RegistryError({ message: "cannot connect to 127.0.0.1:1: ECONNREFUSED" }))
      if (reg.mode === "interrupted") return Effect.flatMap(Effect.fork(Effect.never), (f) => Effect.zipRight(Fiber.interrupt(f), Fiber.join(f)))
      return Effect.succeed({
        document: (name: string) =>
          Effect.suspend((): Effect.Effect<ConfigurationDocument, RegistryError | DocumentError> => {
            if (reg.mode === "hang-document") return Effect.zipRight(Deferred.succeed(reg.reached, undefined), Effect.never)
            const text = reg.docs.get(name)
            if (text === undefined) return Effect.fail(new RegistryError({ message: `configuration "${name}" not found on the registry` }))
            return Effect.flatMap(decodeDocument(text), (doc) => checkDocument(name, doc))
          }),
        signatures: (name: string, hash: string) =>
          Effect.sync(() => {
            const s = reg.signatures.get(name)
            return s !== undefined && s.hash === hash ? s.list : []
          }),
        download: <E>(hash: string, sink: Sink<E>) =>
          Effect.suspend((): Effect.Effect<void, RegistryError | E> => {
            reg.downloads.push(hash)
            if (reg.mode === "hang-download")
              return Effect.zipRight(sink([Buffer.from([1, 2, 3])]), Effect.zipRight(Deferred.succeed(reg.reached, undefined), Effect.never))
            const bytes = reg.blobs.get(hash)
            if (bytes === undefined) return Effect.fail(new RegistryError({ message: `blob ${hash} not found on the registry` }))
            const served = reg.mode === "corrupt" ? Buffer.concat([bytes, Buffer.from("tampered")]) : bytes
            // Several batches of pieces, as a real download delivers them.
            const batches: Array<Array<Buffer>> = []
            for (let i = 0; i < served.length; i += 300) batches.push([served.subarray(i, i + 100), served.subarray(i + 100, i + 300)])
            return Effect.forEach(batches, sink, { discard: true })
          })
      })
    })
  })

export interface FakeScript {
  runs: Array<ScriptRun & { stateFileContent: string }>
  /** Exit status per run: 0 succeeds, "hang" never exits. */
  outcome: 0 | number | "hang"
  reached: Deferred.Deferred<void>
}

export const makeFakeScript = Effect.map(Deferred.make<void>(), (reached): FakeScript => ({ runs: [], outcome: 0, reached }))

const fakeScriptLayer = (s: FakeScript) =>
  Layer.succeed(ScriptRunner, {
    run: (r) =>
      Effect.gen(function* () {
        const stateFileContent = yield* Effect.promise(() => fs.readFile(r.env.STATEFILE!, "utf8"))
        s.runs.push({ ...r, stateFileContent })
        if (s.outcome === "hang") {
          yield* Deferred.succeed(s.reached, undefined)
          return yield* Effect.never
        }
        if (s.outcome !== 0) return yield* new ScriptFailed({ configuration: r.configuration, hash: r.hash, status: `exit status ${s.outcome}` })
      })
  })

export const tempDir = (prefix: string) => fs.mkdtemp(path.join(os.tmpdir(), prefix))

export const settings = (dir: string, overrides: Partial<AgentSettings> = {}): AgentSettings => ({
  host: "127.0.0.1",
  port: 1,
  name: "project1",
  privateKey: Buffer.alloc(0),
  fingerprint: "SHA256:" + "A".repeat(43),
  dir,
  script: "/bin/true",
  state: path.join(dir, "state.json"),
  check: "",
  checkTimeout: Duration.seconds(60),
  retryFailed: undefined,
  poll: Duration.seconds(10),
  jitter: Duration.seconds(5),
  hostName: "web1",
  ping: Duration.seconds(10),
  reconnect: Duration.seconds(10),
  cleanOld: false,
  keepSuid: false,
  verbose: true,
  killGrace: Duration.seconds(5),
  ...overrides
})

/** Every service of the cycle over `dir`, with the fakes and an in-memory log. */
export const testLayer = (cfg: AgentSettings, reg: FakeRegistry, script: FakeScript, lines: Array<string>) => {
  const log = AgentLogMemory(lines)
  return Layer.mergeAll(
    AgentConfig.layer(cfg),
    log,
    fakeRegistryLayer(reg),
    fakeScriptLayer(script),
    Layer.succeed(Cache, makeCache(cfg.dir)),
    Layer.succeed(Unpacker, makeUnpacker(cfg.dir, { keepSuid: cfg.keepSuid, log: (l, m) => void lines.push(`${l} ${m}`) })),
    Layer.succeed(StateFile, makeStateFile(cfg.state, path.join(cfg.dir, "tmp"))),
    Layer.effect(RetryGate, makeRetryGate(cfg.retryFailed))
  )
}
