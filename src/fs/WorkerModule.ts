// Starts a worker thread from a real module (`*.worker.ts`), compiled and type-checked like the rest.
// Every module sits one folder deep, under src/ as TypeScript and under dist/ when built, and the
// bundled programs are one folder deep too (dist/agent/main.bundle.cjs): so `../<folder>/<name>.worker.cjs`
// relative to the caller's module URL finds the worker both from a bundle and from tsc's output (the
// build bundles each worker and puts a CommonJS launcher there that runs it through V8's code cache:
// scripts/postbuild.mjs, src/launch/CodeCache.ts). Under the TypeScript sources (vitest,
// `node --import tsx`) the caller's URL ends in `.ts`: the worker is then bundled once per process with
// esbuild (a dev dependency) into a temp directory, which starts far faster than a worker loading tsx.
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

const fromSources = new Map<string, URL>()
let scratch: string | undefined

/** Bundles a `.worker.ts` for a run from the sources; once per module and process. */
const bundleSource = (callerUrl: string, source: string): URL => {
  const known = fromSources.get(source)
  if (known !== undefined) return known
  if (scratch === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "deploy-tools-workers-"))
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }))
    scratch = dir
  }
  // Not a literal: the production bundles must not pull esbuild in.
  const esbuild = "esbuild"
  const { buildSync } = createRequire(callerUrl)(esbuild) as typeof import("esbuild")
  const out = join(scratch, `${basename(source, ".ts")}.mjs`)
  buildSync({
    entryPoints: [source],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    logLevel: "error",
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  })
  const url = pathToFileURL(out)
  fromSources.set(source, url)
  return url
}

/** `module` is `<folder>/<name>.worker`, e.g. `fs/FileHasher.worker`; `callerUrl` is the caller's `import.meta.url`. */
export const workerUrl = (callerUrl: string, module: string): URL =>
  callerUrl.endsWith(".ts") ? bundleSource(callerUrl, fileURLToPath(new URL(`../${module}.ts`, callerUrl))) : new URL(`../${module}.cjs`, callerUrl)

/** A worker running `module` (see workerUrl); throws as `new Worker` does when it cannot start. */
export const startWorker = (callerUrl: string, module: string, options: WorkerOptions = {}): Worker => new Worker(workerUrl(callerUrl, module), options)
