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
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { basename, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker, type WorkerOptions } from "node:worker_threads"

const fromSources = new Map<string, URL>()
/** CodeCache.ts bundled for the launchers, once per process (every large worker's launcher requires it). */
let codeCacheBundle: { readonly path: string; readonly inputs: Inputs | undefined } | undefined
/** Below this size a worker runs from its bundle without the code cache: postbuild.mjs's SMALL_WORKER. */
const SMALL_WORKER = 64 * 1024

/** The shared directory, if it is ours alone (a shared /tmp); else one of this process's own. */
const sharedDir = (): string => {
  const dir = join(tmpdir(), `deploy-tools-workers-${process.getuid?.() ?? "u"}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0 ? dir : mkdtempSync(join(tmpdir(), "deploy-tools-workers-"))
}

/** Writes `bytes` to `out` whole: a temp file beside it, then rename. */
const writeWhole = (out: string, bytes: Uint8Array | string): void => {
  const tmp = `${out}.${randomBytes(6).toString("hex")}.tmp`
  writeFileSync(tmp, bytes)
  renameSync(tmp, out)
}

/** Writes `bytes` to `<dir>/<name>-<hash of bytes><ext>` unless it is there; returns the path. */
const writeOnce = (dir: string, name: string, ext: string, bytes: Uint8Array | string): string => {
  const out = join(dir, `${name}-${createHash("sha256").update(bytes).digest("hex").slice(0, 16)}${ext}`)
  if (!existsSync(out)) writeWhole(out, bytes)
  return out
}

/** The bundle's inputs as esbuild reported them: absolute path, size and modification time of each. */
type Inputs = ReadonlyArray<readonly [string, number, number]>

/** Undefined when one is not a file (esbuild may list a virtual module): such a bundle is not remembered. */
const inputsOf = (metafile: { readonly inputs: Record<string, unknown> }): Inputs | undefined => {
  try {
    return Object.keys(metafile.inputs).map((f) => {
      const st = statSync(resolve(f))
      return [resolve(f), st.size, st.mtimeMs] as const
    })
  } catch {
    return undefined
  }
}

/** Whether every input is still as it was (a missing file or any change: no). */
const unchanged = (inputs: Inputs): boolean => {
  try {
    return inputs.every(([f, size, mtime]) => {
      const st = statSync(f)
      return st.size === size && st.mtimeMs === mtime
    })
  } catch {
    return false
  }
}

/**
 * The worker entry a previous process made for `source`, if none of the files bundled into it changed
 * since: `<name>-<key>.inputs.json` in the shared directory lists them with the entry. Every vitest worker
 * process bundled every worker module again (~0.6 s of esbuild each for the archive check's 600 inputs);
 * checking the inputs takes a few ms.
 */
const previousEntry = (manifest: string): URL | undefined => {
  try {
    const m = JSON.parse(readFileSync(manifest, "utf8")) as { entry: string; files: ReadonlyArray<string>; inputs: Inputs }
    return m.files.every((f) => existsSync(f)) && unchanged(m.inputs) ? pathToFileURL(m.entry) : undefined
  } catch {
    return undefined
  }
}

/**
 * Bundles a `.worker.ts` for a run from the sources; once per module while its inputs are unchanged, and
 * once per process at most. The bundles are named by their content in one shared directory and written
 * only when missing: a directory per process, removed at exit, was left behind by every process that died
 * by a signal (vitest's workers). The entry is a launcher that runs the bundle through CodeCache.ts
 * (itself bundled the same way), as postbuild's.
 */
const bundleSource = (callerUrl: string, source: string): URL => {
  const known = fromSources.get(source)
  if (known !== undefined) return known
  // Not a literal: the production bundles must not pull esbuild in.
  const esbuild = "esbuild"
  const { buildSync, version } = createRequire(callerUrl)(esbuild) as typeof import("esbuild")
  const options = {
    write: false,
    bundle: true,
    platform: "node",
    format: "cjs",
    logLevel: "error",
    metafile: true,
    define: { "import.meta.url": "__bundleUrl" },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' }
  } as const
  const dir = sharedDir()
  const name = basename(source, ".ts")
  const key = createHash("sha256").update(JSON.stringify([source, version, options, SMALL_WORKER])).digest("hex").slice(0, 16)
  const manifest = join(dir, `${name}-${key}.inputs.json`)
  const previous = previousEntry(manifest)
  if (previous !== undefined) {
    fromSources.set(source, previous)
    return previous
  }
  const cjs = (entry: string) => {
    const out = buildSync({ ...options, entryPoints: [entry] })
    return { code: out.outputFiles[0]!.contents, inputs: inputsOf(out.metafile) }
  }
  const worker = cjs(source)
  let inputs = worker.inputs && [...worker.inputs]
  const files: Array<string> = []
  const launcher = () => {
    codeCacheBundle ??= (({ code, inputs }) => ({ path: writeOnce(dir, "CodeCache", ".cjs", code), inputs }))(
      cjs(fileURLToPath(new URL("../launch/CodeCache.ts", callerUrl)))
    )
    inputs = inputs && codeCacheBundle.inputs && [...inputs, ...codeCacheBundle.inputs]
    const bundle = writeOnce(dir, name, ".bundle.cjs", worker.code)
    files.push(codeCacheBundle.path, bundle)
    return `require(${JSON.stringify(codeCacheBundle.path)}).runWorkerBundle(${JSON.stringify(bundle)})\n`
  }
  // A small worker compiles in less time than the cache takes to look up.
  const entry = writeOnce(dir, name, ".cjs", worker.code.length < SMALL_WORKER ? worker.code : launcher())
  if (inputs !== undefined) writeWhole(manifest, JSON.stringify({ entry, files: [entry, ...files], inputs }))
  const url = pathToFileURL(entry)
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
