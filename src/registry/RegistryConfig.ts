import { Context, Duration, Layer } from "effect"

/** The registry's settings, from its flags (DESIGN.md "Registry flags"). */
export class RegistryConfig extends Context.Tag("registry/RegistryConfig")<
  RegistryConfig,
  {
    /** Data directory: state.db, host_key, files/, uploads/. */
    readonly dir: string
    /** Versions kept per component by retention (versions used by a configuration are always kept). */
    readonly maxVersions: number
    /** Unclaimed uploads older than this are removed. */
    readonly uploadTtl: Duration.Duration
  }
>() {
  static readonly make = (dir: string, overrides: { maxVersions?: number; uploadTtl?: Duration.DurationInput } = {}) =>
    Layer.succeed(RegistryConfig, {
      dir,
      maxVersions: overrides.maxVersions ?? 10,
      uploadTtl: Duration.decode(overrides.uploadTtl ?? "30 minutes")
    })
}
