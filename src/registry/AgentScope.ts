// What a scoped agent key (`configurations="…"`, ConfigScope.ts) may read. Configurations: those whose
// name the scope allows. Blobs: those a layer of an allowed configuration's recent states names, where
// "recent" is the current state and the RECENT_STATES - 1 states recorded before it: an agent still
// deploying the state before a change, or going back to it, finds its blobs; a blob that only an older
// state (or only another configuration) names is "not found". Anything else looks as if it did not exist,
// so a scoped key learns no names. Without a scope everything is readable, as before the option existed.
// The SFTP agent view asks this, and so can any other agent-facing surface (watch stream, reports).
import { Clock, type Context, Effect } from "effect"
import type { ConfigScope } from "../domain/ConfigScope.js"
import type { StorageError } from "../domain/Errors.js"
import type { Storage } from "./Storage.js"

/** A readable set is reused this long for a blob it contains (a download opens and stats each blob). */
const REUSE_MS = 2000

/** How many states of each allowed configuration, newest first (current included), keep their blobs readable. */
export const RECENT_STATES = 5

export interface AgentScope {
  /** The scope's text, or undefined for an unscoped key (keys caches shared by logins of the same scope). */
  readonly key: string | undefined
  readonly mayReadConfiguration: (name: string) => boolean
  /** Every blob hash the key may read (undefined: all). */
  readonly readableBlobs: Effect.Effect<ReadonlySet<string> | undefined, StorageError>
  readonly mayReadBlob: (hash: string) => Effect.Effect<boolean, StorageError>
}

export const agentScope = (storage: Context.Tag.Service<typeof Storage>, scope: ConfigScope | undefined): AgentScope => {
  if (scope === undefined) {
    return { key: undefined, mayReadConfiguration: () => true, readableBlobs: Effect.succeed(undefined), mayReadBlob: () => Effect.succeed(true) }
  }
  const fresh = storage.configurationNames.pipe(
    Effect.flatMap((names) =>
      Effect.forEach(names.filter(scope.allows), (name) =>
        storage.history(name, RECENT_STATES).pipe(
          // Deleted since the listing: it names nothing any more.
          Effect.catchTag("ConfigurationNotFound", () => Effect.succeed([]))
        ))
    ),
    Effect.map((histories) => new Set(histories.flatMap((states) => states.flatMap((s) => s.layers.map((l) => l.hash as string)))))
  )
  // Only a hit is answered from the last set: a miss is checked afresh, so a blob just made readable
  // by a change is never refused, while a blob no longer readable stays so for REUSE_MS at most.
  let last: { readonly at: number; readonly set: ReadonlySet<string> } | undefined
  const readableBlobs = Effect.flatMap(fresh, (set) => Effect.map(Clock.currentTimeMillis, (at) => ((last = { at, set }), set)))
  return {
    key: scope.text,
    mayReadConfiguration: scope.allows,
    readableBlobs,
    mayReadBlob: (hash) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        last !== undefined && now - last.at < REUSE_MS && last.set.has(hash) ? Effect.succeed(true) : Effect.map(readableBlobs, (set) => set.has(hash)))
  }
}
