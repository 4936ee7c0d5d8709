// Starts a worker thread from a real module (`*.worker.ts`), compiled and type-checked like the rest.
// Every module sits one folder deep, under src/ as TypeScript and under dist/ when built, and the
// bundled programs are one folder deep too (dist/agent/main.js): so `../<folder>/<name>.worker.js`
// relative to the caller's module URL finds the worker both from a bundle and from tsc's output. Under
// the TypeScript sources (vitest, `node --import tsx`) the caller's URL ends in `.ts`: the worker is then
// the `.ts` module, loaded through tsx by scripts/ts-worker.mjs.
import { Worker, type WorkerOptions } from "node:worker_threads"

/** `module` is `<folder>/<name>.worker`, e.g. `fs/FileHasher.worker`; `callerUrl` is the caller's `import.meta.url`. */
export const startWorker = (callerUrl: string, module: string, options: WorkerOptions = {}): Worker => {
  const fromSources = callerUrl.endsWith(".ts")
  const url = new URL(`../${module}${fromSources ? ".ts" : ".js"}`, callerUrl)
  if (!fromSources) return new Worker(url, options)
  return new Worker(new URL("../../scripts/ts-worker.mjs", callerUrl), { ...options, argv: [url.href, ...(options.argv ?? [])] })
}
