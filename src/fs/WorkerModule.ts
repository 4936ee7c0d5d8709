// Starts a worker thread from a real module (`*.worker.ts`), compiled and type-checked like the rest.
// Every module sits one folder deep, under src/ as TypeScript and under dist/ when built, and the
// bundled programs are one folder deep too (dist/agent/main.bundle.cjs): so `../<folder>/<name>.worker.cjs`
// relative to the caller's module URL finds the worker both from a bundle and from tsc's output (the
// build bundles each worker and puts a CommonJS launcher there that runs it through V8's code cache:
// scripts/postbuild.mjs, src/launch/CodeCache.ts). Under the TypeScript sources (vitest,
// `node --import tsx`) the caller's URL ends in `.ts`: the worker is then bundled once per process with
// esbuild (a dev dependency) into a temp directory, which starts far faster than a worker loading tsx.
import { createHash, randomBytes } from "node:crypto"
import { existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

const fromSources = new Map<string, URL>()

/** The shared directory, if it is ours alone (a shared /tmp); else one of this process's own. */
const sharedDir = (): string => {
  const dir = join(tmpdir(), `deploy-tools-workers-${process.getuid?.() ?? "u"}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0 ? dir : mkdtempSync(join(tmpdir(), "deploy-tools-workers-"))
}

/**
 * Bundles a `.worker.ts` for a run from the sources; once per module and process. The bundle is named by
 * its content in one shared directory and written only when missing (temp file, rename): a directory per
 * process, removed at exit, was left behind by every process that died by a signal (vitest's workers).
 */
const bundleSource = (callerUrl: string, source: string): URL => {
  const known = fromSources.get(source)
  if (known !== undefined) return known
  // Not a literal: the production bundles must not pull esbuild in.
  const esbuild = "esbuild"
  const { buildSync } = createRequire(callerUrl)(esbuild) as typeof import("esbuild")
  const built = buildSync({
    entryPoints: [source],
    write: false,
    bundle: true,
    platform: "node",
    format: "esm",
    logLevel: "error",
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" }
  }).outputFiles[0]!.contents
  const dir = sharedDir()
  const out = join(dir, `${basename(source, ".ts")}-${createHash("sha256").update(built).digest("hex").slice(0, 16)}.mjs`)
  if (!existsSync(out)) {
    const tmp = `${out}.${randomBytes(6).toString("hex")}.tmp`
    writeFileSync(tmp, built)
    renameSync(tmp, out)
  }
  const url = pathToFileURL(out)
  fromSources.set(source, url)
  return url
}

/** `module` is `<folder>/<name>.worker`, e.g. `fs/FileHasher.worker`; `callerUrl` is the caller's `import.meta.url`. */
export const workerUrl = (callerUrl: string, module: string): URL =>
  callerUrl.endsWith(".ts") ? bundleSource(callerUrl, fileURLToPath(new URL(`../${module}.ts`, callerUrl))) : new URL(`../${module}.cjs`, callerUrl)

/** A worker running `module` (see workerUrl); throws as `new Worker` does when it cannot start. */
export const startWorker = (callerUrl: string, module: string, options: WorkerOptions = {}): Worker => new Worker(workerUrl(callerUrl, module), options)
