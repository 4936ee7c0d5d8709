import { Context, Duration, Layer } from "effect"

export const DEFAULT_CACHE_MAX = 10 * 1024 ** 3

/** The registry's settings, from its flags (DESIGN.md "Registry flags"). */
export class RegistryConfig extends Context.Tag("registry/RegistryConfig")<
  RegistryConfig,
  {
    /** Data directory: state.db, host_key, files/, uploads/ (with -db: host_key, uploads/, cache/). */
    readonly dir: string
    /** -db: the PostgreSQL URL holding metadata and blobs; undefined for SQLite in `dir`. */
    readonly db: string | undefined
    /** -cache-max: bytes the blob cache (cache/, with -db) may hold. */
    readonly cacheMax: number
    /** Versions kept per component by retention (versions used by a configuration are always kept). */
    readonly maxVersions: number
    /** Unclaimed uploads older than this are removed. */
    readonly uploadTtl: Duration.Duration
  }
>() {
  static readonly make = (
    dir: string,
    overrides: { maxVersions?: number; uploadTtl?: Duration.DurationInput; db?: string | undefined; cacheMax?: number } = {}
  ) =>
    Layer.succeed(RegistryConfig, {
      dir,
      db: overrides.db,
      cacheMax: overrides.cacheMax ?? DEFAULT_CACHE_MAX,
      maxVersions: overrides.maxVersions ?? 10,
      uploadTtl: Duration.decode(overrides.uploadTtl ?? "30 minutes")
    })
}
