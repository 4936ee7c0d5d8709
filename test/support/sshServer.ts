// An in-process SshServer for unit tests of the SSH edge: real ssh2 server and host key, Auth over
// generated keys, a recording CommandInterpreter, and whatever Uploads/Storage/BlobStore layers the test gives.
import { RolloutsNone } from "../../src/registry/Rollouts.js"
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import type { ParsedKey } from "ssh2"
import type { ConfigurationDocument } from "../../src/domain/Document.js"
import type { Principal } from "../../src/domain/Principal.js"
import { Auth } from "../../src/registry/Auth.js"
import { BlobStore, BlobStoreLive } from "../../src/registry/BlobStore.js"
import { CommandInterpreter } from "../../src/registry/CommandInterpreter.js"
import { RegistryConfig } from "../../src/registry/RegistryConfig.js"
import { SshServer, SshServerLive, type SshServerOptions } from "../../src/registry/SshServer.js"
import { SignaturesNone } from "../../src/registry/Signatures.js"
import { Storage } from "../../src/registry/Storage.js"
import { ChangeFeedLive } from "../../src/registry/ChangeFeed.js"
import { HostStatus } from "../../src/registry/HostStatus.js"
import { Uploads, UploadsLive } from "../../src/registry/Uploads.js"
import { parseAuthorizedKeys } from "../../src/ssh/AuthorizedKeys.js"
import { HostKey, loadOrCreate } from "../../src/ssh/HostKey.js"
import { tempDir } from "./keys.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

export interface GeneratedKey {
  readonly privateKey: string
  readonly publicLine: string
  readonly parsed: ParsedKey
}

export const generateKey = (comment: string): GeneratedKey => {
  const kp = generateEd25519(comment)
  const parsed = ssh2.utils.parseKey(kp.private)
  if (parsed instanceof Error) throw parsed
  return { privateKey: kp.private, publicLine: kp.public, parsed }
}

export interface ConsoleCall {
  readonly line: string
  readonly who: Principal
}

export interface InProcessServer {
  readonly port: number
  readonly dir: string
  readonly hostFingerprint: string
  readonly operator: GeneratedKey
  readonly agent: GeneratedKey
  /** Every CommandInterpreter.run so far. */
  readonly calls: Array<ConsoleCall>
  /** Runs an effect against the server's Uploads/BlobStore/Storage. */
  readonly run: <A, E>(eff: Effect.Effect<A, E, Uploads | BlobStore | Storage>) => Promise<A>
  readonly close: () => Promise<void>
}

/**
 * A Storage that serves a fixed set of documents (names are returned as given; `onDocument` sees each
 * lookup) and dies on anything else: the agent view reads only these two.
 */
export const fixedStorage = (
  docs: ReadonlyArray<ConfigurationDocument>,
  opts: { readonly names?: ReadonlyArray<string>; readonly onDocument?: (name: string) => void } = {}
) =>
  Layer.mock(Storage, {
    generation: () => undefined,
    configurationNames: Effect.succeed(opts.names ?? docs.map((d) => d.Name)),
    document: (name: string) =>
      Effect.sync(() => {
        opts.onDocument?.(name)
        return Option.fromNullable(docs.find((d) => d.Name === name))
      })
  })

/**
 * CommandInterpreter.run answers `ran <line>` (exit 0), or `failed <line>` (exit 1) when the line starts with "fail".
 * A line starting with "sleep" waits 300 ms first.
 */
const recordingConsole = (calls: Array<ConsoleCall>) =>
  Layer.succeed(CommandInterpreter, {
    run: (line: string, who: Principal) =>
      Effect.gen(function* () {
        calls.push({ line, who })
        if (line.startsWith("sleep")) yield* Effect.sleep("300 millis")
        return line.startsWith("fail")
          ? { output: `failed ${line}\n`, exitCode: 1 as const }
          : { output: `ran ${line}\n`, exitCode: 0 as const }
      })
  })

export const startInProcess = async (
  opts: Partial<SshServerOptions> & { storage?: Layer.Layer<Storage> } = {}
): Promise<InProcessServer> => {
  const dir = await tempDir("sshserver-")
  const operator = generateKey("alice@test")
  const agent = generateKey("web1@test")
  const calls: Array<ConsoleCall> = []
  const hostKey = await Effect.runPromise(loadOrCreate(dir))
  const config = RegistryConfig.make(dir)
  const store = Layer.mergeAll(UploadsLive, BlobStoreLive, opts.storage ?? fixedStorage([])).pipe(Layer.provide(config))
  const deps = Layer.mergeAll(
    Layer.succeed(HostKey, hostKey),
    Auth.fromKeys(parseAuthorizedKeys(operator.publicLine).keys, parseAuthorizedKeys(agent.publicLine).keys),
    recordingConsole(calls),
    SignaturesNone,
    store,
    ChangeFeedLive,
    // These tests serve no watch sessions; the SFTP view only reports document reads.
    Layer.mock(HostStatus, { documentRead: () => Effect.void }),
    RolloutsNone.pipe(Layer.provide(opts.storage ?? fixedStorage([])))
  )
  const scope = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(
    Layer.buildWithScope(
      Layer.merge(
        SshServerLive({
          host: "127.0.0.1", port: 0, deadline: opts.deadline ?? "1 hour",
          ...(opts.handshakeTimeout ? { handshakeTimeout: opts.handshakeTimeout } : {}),
          ...(opts.limits ? { limits: opts.limits } : {})
        }),
        store
      ).pipe(Layer.provide(deps)),
      scope
    ).pipe(Effect.provide(Layer.empty))
  )
  const server = Context.get(ctx, SshServer)
  return {
    port: server.address.port,
    dir,
    hostFingerprint: hostKey.fingerprint,
    operator,
    agent,
    calls,
    run: (eff) => Effect.runPromise(Effect.provide(eff, Layer.succeedContext(ctx as never))),
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await fs.rm(dir, { recursive: true, force: true })
    }
  }
}

export const listDir = async (dir: string, sub: string) => fs.readdir(path.join(dir, sub)).catch(() => [] as Array<string>)
