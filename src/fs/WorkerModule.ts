// Starts a worker thread from a real module (`*.worker.ts`), compiled and type-checked like the rest.
// Every module sits one folder deep, under src/ as TypeScript and under dist/ when built, and the
// bundled programs are one folder deep too (dist/agent/main.bundle.cjs): so `../<folder>/<name>.worker.cjs`
// relative to the caller's module URL finds the worker both from a bundle and from tsc's output (the
// build bundles each worker and puts a CommonJS launcher there that runs it through V8's code cache:
// scripts/postbuild.mjs, src/launch/CodeCache.ts). Under the TypeScript sources (vitest,
// `node --import tsx`) the caller's URL ends in `.ts`: the worker is then bundled once per process with
// esbuild (a dev dependency) into a temp directory, which starts far faster than a worker loading tsx,
// as CommonJS run through the code cache as the build's are (an ES module bundle was compiled at every
// start: 187 -> 134 ms of CPU per archive check in a vitest worker, measured over 10 starts), and
// without tsx's loader, which the worker would otherwise inherit and does not need.
import { createHash, randomBytes } from "node:crypto"
import { existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

const fromSources = new Map<string, URL>()
/** CodeCache.ts bundled for the launchers, once per process (every large worker's launcher requires it). */
let codeCacheBundle: string | undefined
/** Below this size a worker runs from its bundle without the code cache: postbuild.mjs's SMALL_WORKER. */
const SMALL_WORKER = 64 * 1024

/** The shared directory, if it is ours alone (a shared /tmp); else one of this process's own. */
const sharedDir = (): string => {
  const dir = join(tmpdir(), `deploy-tools-workers-${process.getuid?.() ?? "u"}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0 ? dir : mkdtempSync(join(tmpdir(), "deploy-tools-workers-"))
}

/** Writes `bytes` to `<dir>/<name>-<hash of bytes><ext>` unless it is there (temp file, rename); returns the path. */
const writeOnce = (dir: string, name: string, ext: string, bytes: Uint8Array | string): string => {
  const out = join(dir, `${name}-${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}${ext}`)
  if (!existsSync(out)) {
    const tmp = `${out}.${randomBytes(6).toString("hex")}.tmp`
    writeFileSync(tmp, bytes)
    renameSync(tmp, out)
  }
  return out
}

/**
 * Bundles a `.worker.ts` for a run from the sources; once per module and process. The bundles are named
 * by their content in one shared directory and written only when missing: a directory per process,
 * removed at exit, was left behind by every process that died by a signal (vitest's workers). The entry
 * is a launcher that runs the bundle through CodeCache.ts (itself bundled the same way), as postbuild's.
 */
const bundleSource = (callerUrl: string, source: string): URL => {
  const known = fromSources.get(source)
  if (known !== undefined) return known
  // Not a literal: the production bundles must not pull esbuild in.
  const esbuild = "esbuild"
  const { buildSync } = createRequire(callerUrl)(esbuild) as typeof import("esbuild")
  const cjs = (entry: string) =>
    buildSync({
      entryPoints: [entry],
      write: false,
      bundle: true,
      platform: "node",
      format: "cjs",
      logLevel: "error",
      define: { "import.meta.url": "__bundleUrl" },
      banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' }
    }).outputFiles[0]!.contents
  const dir = sharedDir()
  const name = basename(source, ".ts")
  const code = cjs(source)
  const launcher = () => {
    codeCacheBundle ??= writeOnce(dir, "CodeCache", ".cjs", cjs(fileURLToPath(new URL("../launch/CodeCache.ts", callerUrl))))
    const bundle = writeOnce(dir, name, ".bundle.cjs", code)
    return `require(${JSON.stringify(codeCacheBundle)}).runWorkerBundle(${JSON.stringify(bundle)})\n`
  }
  // A small worker compiles in less time than the cache takes to look up.
  const url = pathToFileURL(writeOnce(dir, name, ".cjs", code.length < SMALL_WORKER ? code : launcher()))
  fromSources.set(source, url)
  return url
}

/** This process's Node flags without tsx's loader (`--import tsx`, `--require tsx`, `--loader tsx`...). */
export const withoutTsx = (argv: ReadonlyArray<string>): Array<string> => {
  const loader = /^--(import|require|loader|experimental-loader)$/
  const isTsx = (v: string) => /^(.*[\\/])?tsx([\\/].*)?$/.test(v)
  const out: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const eq = a.indexOf("=")
    if (loader.test(a) && isTsx(argv[i + 1] ?? "")) i++
    else if (!(eq > 0 && loader.test(a.slice(0, eq)) && isTsx(a.slice(eq + 1)))) out.push(a)
  }
  return out
}

/** `module` is `<folder>/<name>.worker`, e.g. `fs/FileHasher.worker`; `callerUrl` is the caller's `import.meta.url`. */
export const workerUrl = (callerUrl: string, module: string): URL =>
  callerUrl.endsWith(".ts") ? bundleSource(callerUrl, fileURLToPath(new URL(`../${module}.ts`, callerUrl))) : new URL(`../${module}.cjs`, callerUrl)

/** A worker running `module` (see workerUrl); throws as `new Worker` does when it cannot start. */
export const startWorker = (callerUrl: string, module: string, options: WorkerOptions = {}): Worker =>
  new Worker(workerUrl(callerUrl, module), callerUrl.endsWith(".ts") && options.execArgv === undefined ? { ...options, execArgv: withoutTsx(process.execArgv) } : options)
