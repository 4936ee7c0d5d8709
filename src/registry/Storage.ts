// Metadata of components, versions and configurations over @effect/sql (SQLite by default).
import { Context, type Effect, type Option } from "effect"
import type { ConfigurationDocument } from "../domain/Document.js"
import type { StorageError } from "../domain/Errors.js"

export class Storage extends Context.Tag("registry/Storage")<
  Storage,
  {
    /** Configuration names in byte order (the agent view lists them so, fault 11). */
    readonly configurationNames: Effect.Effect<ReadonlyArray<string>, StorageError>
    /** The current document of a configuration. */
    readonly document: (name: string) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError>
  }
>() {}
