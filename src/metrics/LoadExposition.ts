// Loads Exposition.ts for a program given -metrics or -metrics-file. Built, it is its own bundle
// (dist/metrics/exposition.bundle.cjs, scripts/postbuild.mjs) required from here at run time, so the
// programs' bundles stay without the OpenTelemetry libraries and their start-up does not grow. Unbundled
// (tsc output or tsx), the module itself is imported.
import { Effect, type Scope } from "effect"
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import type * as ExpositionModule from "./Exposition.js"
import type { Exposition } from "./Exposition.js"

export type { Exposition } from "./Exposition.js"
export { OPENMETRICS_TYPE, TEXT_TYPE } from "./ContentTypes.js"

// The programs' bundles live in dist/<program>/, this module in dist/metrics/: one relative path for both.
const BUNDLE = "../metrics/exposition.bundle.cjs"

const load = async (): Promise<typeof ExpositionModule> => {
  const bundled = fileURLToPath(new URL(BUNDLE, import.meta.url))
  if (existsSync(bundled)) return createRequire(import.meta.url)(bundled) as typeof ExpositionModule
  // A computed specifier, so esbuild leaves this import out of the programs' bundles.
  const unbundled = "./Exposition.js"
  return (await import(unbundled)) as typeof ExpositionModule
}

/** The exposition for the scope's lifetime. */
export const makeExposition = (service: { readonly name: string; readonly version: string }): Effect.Effect<Exposition, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(() => load().then((m) => m.createExposition(service))),
      (e) => Effect.promise(() => e.close().catch(() => undefined))
    ),
    (e): Exposition => e
  )
