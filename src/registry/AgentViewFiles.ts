// What the agent view serves, as bytes and attributes, for one session's key scope: configuration
// documents (encoded once per change, cached per registry), signatures, blob attributes and the three
// listings (built once for all sessions that may see the same things, however many ask at once).
import { Deferred, Effect, FiberId, Option } from "effect"
import type { Attributes, FileEntry } from "ssh2"
import { type ConfigurationDocument, encodeDocument } from "../domain/Document.js"
import type { StorageError } from "../domain/Errors.js"
import { dirAttrs, fileAttrs, longname } from "../ssh/SftpProtocol.js"
import type { AgentScope } from "./AgentScope.js"
import type { ViewPath } from "./AgentViewPath.js"
import type { BlobStore } from "./BlobStore.js"
import type { Signatures } from "./Signatures.js"
import type { Storage } from "./Storage.js"

/** Encoded documents per Storage (one registry); a changed document has a new hash and time, so a new key. */
const encodedByStorage = new WeakMap<object, Map<string, { key: string; data: Buffer }>>()
/** Encoded documents kept per registry (each a few KiB). */
const ENCODED_CACHE = 10_000
/**
 * Listings being built, per Storage: concurrent OPENDIRs of one directory share one build, so a
 * pipelined flood of OPENDIR costs one listing, not one per request.
 */
const building = new WeakMap<object, Map<string, Deferred.Deferred<Array<FileEntry>, { readonly message: string }>>>()

export const viewFiles = (
  storage: Storage["Type"],
  blobs: BlobStore["Type"],
  signatures: Signatures["Type"],
  scope: AgentScope,
  /** This session's document of a configuration (a rollout serves hosts by wave); else the current one. */
  documentOf?: (name: string) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError>
) => {
  const encoded = encodedByStorage.get(storage) ?? new Map<string, { key: string; data: Buffer }>()
  encodedByStorage.set(storage, encoded)
  // Encoding is most of a document's cost; a changed document has a new hash and time, so a new key.
  const documentBytes = (name: string, read: (name: string) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError> = storage.document) =>
    read(name).pipe(
      Effect.map(Option.map((doc) => {
        const key = `${doc.Hash}@${doc.Mtime.getTime()}`
        let hit = encoded.get(name)
        if (hit?.key !== key) {
          hit = { key, data: Buffer.from(encodeDocument(doc)) }
          if (encoded.size >= ENCODED_CACHE) encoded.delete(encoded.keys().next().value!)
          encoded.set(name, hit)
        }
        return { data: hit.data, mtime: doc.Mtime, hash: doc.Hash }
      }))
    )

  // The signatures of a configuration a key may not read are as absent as the configuration.
  const fileBytes = (v: { readonly _tag: "Config" | "Signatures"; readonly name: string }): Effect.Effect<
    Option.Option<{ readonly data: Buffer; readonly mtime: Date; readonly hash?: string }>,
    StorageError
  > =>
    !scope.mayReadConfiguration(v.name) ? Effect.succeed(Option.none())
      : v._tag === "Config" ? documentBytes(v.name, documentOf)
      // The signatures of the state this session is served (a rollout's target to the hosts of its waves).
      : Effect.flatMap((documentOf ?? storage.document)(v.name), Option.match({
        onNone: () => Effect.succeed(Option.none()),
        onSome: (served) => Effect.map(signatures.served(v.name, served.Hash), (d) => Option.fromNullable(d).pipe(Option.map((doc) => ({
          data: Buffer.from(JSON.stringify(doc)),
          mtime: new Date(Math.max(0, ...doc.Signatures.map((g) => Date.parse(g.Time))))
        }))))
      }))

  /** Attributes of a view path, or undefined if it does not exist. */
  const attrsOf = (v: ViewPath): Effect.Effect<Attributes | undefined, { readonly message: string }> => {
    switch (v._tag) {
      case "Dir":
        return Effect.succeed(dirAttrs())
      case "Config":
      case "Signatures":
        return fileBytes(v).pipe(
          Effect.map(Option.match({ onNone: () => undefined, onSome: (d) => fileAttrs(d.data.length, d.mtime) }))
        )
      case "Blob":
        return Effect.flatMap(scope.mayReadBlob(v.hash), (ok) => ok ? blobs.stat(v.hash) : Effect.succeed(undefined)).pipe(
          Effect.map((i) => (i ? fileAttrs(i.size, i.mtime) : undefined)))
    }
  }

  const listing = (dir: "/" | "/configs" | "/files"): Effect.Effect<Array<FileEntry>, { readonly message: string }> => {
    const entry = (filename: string, attrs: Attributes): FileEntry => ({ filename, longname: longname(filename, attrs), attrs })
    switch (dir) {
      case "/":
        return Effect.succeed([entry("configs", dirAttrs()), entry("files", dirAttrs())])
      case "/configs":
        return storage.configurationNames.pipe(
          Effect.flatMap((names) =>
            Effect.forEach(names.filter(scope.mayReadConfiguration), (name) =>
              documentBytes(name).pipe(
                Effect.map(Option.map((d) => entry(`${name}.json`, fileAttrs(d.data.length, d.mtime))))
              ))
          ),
          Effect.map((xs) => xs.flatMap((o) => (Option.isSome(o) ? [o.value] : [])))
        )
      case "/files":
        return Effect.all([blobs.list, scope.readableBlobs]).pipe(
          Effect.flatMap(([hashes, readable]) =>
            Effect.forEach(hashes.filter((h) => readable === undefined || readable.has(h)).sort(), (h) =>
              blobs.stat(h).pipe(Effect.map((i) => (i ? [entry(h, fileAttrs(i.size, i.mtime))] : []))), { concurrency: 8 })
          ),
          Effect.map((xs) => xs.flat())
        )
    }
  }

  const inProgress = building.get(storage) ?? new Map<string, Deferred.Deferred<Array<FileEntry>, { readonly message: string }>>()
  building.set(storage, inProgress)
  const sharedListing = (dir: "/" | "/configs" | "/files"): Effect.Effect<Array<FileEntry>, { readonly message: string }> =>
    Effect.suspend(() => {
      // Shared only between sessions that may see the same things.
      const key = scope.key === undefined ? dir : `${dir}\0${scope.key}`
      const current = inProgress.get(key)
      if (current !== undefined) return Deferred.await(current)
      const d = Deferred.unsafeMake<Array<FileEntry>, { readonly message: string }>(FiberId.none)
      inProgress.set(key, d)
      // Uninterruptible: other sessions wait for this build even if this one ends.
      return Effect.uninterruptible(
        Effect.exit(listing(dir)).pipe(
          Effect.tap(() => Effect.sync(() => inProgress.delete(key))),
          Effect.tap((exit) => Deferred.done(d, exit)),
          Effect.flatMap((exit) => exit)
        )
      )
    })

  return { fileBytes, attrsOf, sharedListing }
}
