// The agent's view of the registry: SSH as `deploy-agent`, host key pinned by fingerprint,
// read-only SFTP through the shared client (src/ssh/Sftp*.ts). One SFTP channel per cycle, closed with
// its scope, on the watch session's connection when there is one (Session.ts).
import { Context, Effect, Layer, Option, type Scope } from "effect"
import type { SFTPWrapper } from "ssh2"
import { RegistryError } from "../domain/AgentErrors.js"
import { configHash } from "../domain/ConfigHash.js"
import { blobFile, type ConfigurationDocument, decodeDocument } from "../domain/Document.js"
import { DocumentError } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import { openSftp } from "../ssh/Sftp.js"
import { causeOf, isNoSuchFile, readCapped, readInto, type Sink } from "../ssh/SftpRead.js"

export type { Sink }
import type { ServedSignature } from "./TrustPolicy.js"
import { AgentSession } from "./Session.js"

export interface RegistrySession {
  /** `/configs/<name>.json`, decoded and checked (name and hash agree with the layers). */
  readonly document: (name: string) => Effect.Effect<ConfigurationDocument, RegistryError | DocumentError>
  /** `/files/<hash>`, fed to `sink` in order (parallel reads); the sink's failures pass through unchanged. */
  readonly download: <E>(hash: Sha256, sink: Sink<E>) => Effect.Effect<void, RegistryError | E>
  /** `/signatures/<name>.json` for the state with `hash`: none when absent, unreadable or for another state. */
  readonly signatures: (name: string, hash: string) => Effect.Effect<ReadonlyArray<ServedSignature>, RegistryError>
}

export class RegistryClient extends Context.Tag("agent/RegistryClient")<
  RegistryClient,
  { readonly connect: Effect.Effect<RegistrySession, RegistryError, Scope.Scope> }
>() {}

/** Checks a decoded document against what we asked for; a registry bug or tampering shows here. */
export const checkDocument = (name: string, doc: ConfigurationDocument): Effect.Effect<ConfigurationDocument, DocumentError> => {
  if (doc.Name !== name) return Effect.fail(new DocumentError({ message: `bad configuration document: asked for "${name}", got "${doc.Name}"` }))
  const expected = configHash(doc.Layers.map((l) => l.Hash))
  if (doc.Hash !== expected)
    return Effect.fail(new DocumentError({ message: `bad configuration document: Hash ${doc.Hash} does not match its layers (${expected})` }))
  const seen = new Set<string>()
  for (const l of doc.Layers) {
    if (seen.has(l.Name)) return Effect.fail(new DocumentError({ message: `bad configuration document: component "${l.Name}" appears twice` }))
    seen.add(l.Name)
  }
  return Effect.succeed(doc)
}

const sftpError = (what: string, err: unknown) =>
  new RegistryError({ message: `${what}: ${err instanceof Error ? err.message : String(err)}` })

/**
 * Largest configuration document the agent reads (documents are a few KiB). A registry, or anyone
 * holding its host key, could otherwise send an endless one and exhaust the agent's memory.
 */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
/** Signatures are a few KiB each; a registry listing more than this is not one we take. */
const MAX_SIGNATURES_BYTES = 1024 * 1024

/** The signatures listed for `hash` (a listing for another state signs nothing here); malformed: none. */
const servedSignatures = (data: Buffer, hash: string): ReadonlyArray<ServedSignature> => {
  try {
    const doc = JSON.parse(data.toString("utf8")) as { Hash?: unknown; Signatures?: unknown }
    if (doc.Hash !== hash || !Array.isArray(doc.Signatures)) return []
    return doc.Signatures.filter((s): s is ServedSignature => typeof s?.Time === "string" && typeof s?.Signature === "string")
  } catch {
    return []
  }
}

/** The session over an open SFTP channel (ssh/Sftp.ts settles every request when the channel or the connection ends). */
export const makeSession = (sftp: SFTPWrapper, options?: { readonly maxDocumentBytes?: number }): RegistrySession => {
  const maxDocumentBytes = options?.maxDocumentBytes ?? MAX_DOCUMENT_BYTES
  return {
    document: (want) =>
      readCapped(sftp, `/configs/${want}.json`, maxDocumentBytes).pipe(
        Effect.mapError((e) =>
          e._tag === "FileTooLarge"
            ? new RegistryError({ message: `configuration "${want}" from the registry is larger than ${e.limit} bytes, the most the agent reads; refused` })
            : isNoSuchFile(causeOf(e))
              ? new RegistryError({ message: `configuration "${want}" not found on the registry` })
              : sftpError(`cannot read configuration "${want}"`, causeOf(e))
        ),
        Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new RegistryError({ message: `reading configuration "${want}" timed out` }) }),
        Effect.flatMap((data) => decodeDocument(data.toString("utf8"))),
        Effect.flatMap((doc) => checkDocument(want, doc))
      ),
    signatures: (want, hash) =>
      readCapped(sftp, `/signatures/${want}.json`, MAX_SIGNATURES_BYTES).pipe(
        Effect.map((data) => servedSignatures(data, hash)),
        // A registry without signatures (older, or the original) serves none: the state is unsigned.
        Effect.catchAll((e) => e._tag !== "FileTooLarge" && isNoSuchFile(causeOf(e)) ? Effect.succeed([]) : Effect.fail(sftpError(`cannot read the signatures of "${want}"`, e._tag === "FileTooLarge" ? e : causeOf(e))))
      ),
    download: (hash, sink) =>
      readInto(sftp, `/${blobFile(hash)}`, sink, (err) =>
        isNoSuchFile(err) ? new RegistryError({ message: `blob ${hash} not found on the registry` }) : sftpError(`downloading blob ${hash}`, err)
      )
  }
}

/**
 * A session per cycle: an SFTP channel on the watch session's connection when one is open (Session.ts),
 * else a connection of its own, closed with the scope, as before sessions.
 */
export const RegistryClientLive = Layer.effect(
  RegistryClient,
  Effect.gen(function* () {
    const agentSession = yield* AgentSession
    const fresh = Effect.gen(function* () {
      const client = yield* agentSession.connect
      const sftp = yield* openSftp(client).pipe(Effect.mapError((e) => sftpError("cannot open SFTP session", causeOf(e))))
      return makeSession(sftp)
    })
    return {
      connect: Effect.flatMap(agentSession.held, (held) =>
        Option.isNone(held)
          ? fresh
          : openSftp(held.value).pipe(
              Effect.map(makeSession),
              Effect.orElse(() => fresh) // the held connection just died: poll on a new one
            )
      )
    }
  })
)
