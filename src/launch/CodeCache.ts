// Starts a bundled program through V8's code cache. Compiling the ~1.5 MB bundles was most of every
// command's start-up (a `deployctl` round trip took 3–4× `node -e 0`, half of it in the compiler); with
// the cache, V8 deserializes instead. Node 22's module.enableCompileCache would do this for ESM, but Node
// 20 has no code cache for ES modules, so the bundles are CommonJS and run through vm.Script, which takes
// and produces cached data on every Node we support.
// Worker threads start the same way (runWorkerBundle, from a CommonJS launcher beside each worker bundle:
// scripts/postbuild.mjs), so a worker such as the archive check no longer compiles its ~0.8 MB each start.
// The cache is an optimisation only: any problem with it (no HOME, a read-only or foreign directory, a
// stale or corrupt file) means compiling as before, never an error. Cached data is code, so it is used
// only from a directory that belongs to this user and that no one else can write.
import { isAscii } from "node:buffer"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import Module, { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as vm from "node:vm"
import { threadId } from "node:worker_threads"

/**
 * StartedUp.ts's hook (the same Symbol.for key). Not imported from there: one more ES module in the
 * launcher's graph made every registry start ~40 ms of CPU dearer (measured, 20 alternating rounds).
 */
const STARTED_UP = Symbol.for("deploy-tools/started-up")

/** `$DEPLOY_TOOLS_CACHE`, else `$XDG_CACHE_HOME/deploy-tools`, else `~/.cache/deploy-tools`; undefined without a home. */
export const cacheDir = (env: NodeJS.ProcessEnv = process.env): string | undefined => {
  if (env["DEPLOY_TOOLS_CACHE"]) return env["DEPLOY_TOOLS_CACHE"]
  if (env["XDG_CACHE_HOME"]) return path.join(env["XDG_CACHE_HOME"], "deploy-tools")
  const home = env["HOME"] || os.homedir()
  return home ? path.join(home, ".cache", "deploy-tools") : undefined
}

/** The directory if it is ours and closed to others (created 0700 if missing); undefined otherwise. */
const safeDir = (dir: string): string | undefined => {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = fs.lstatSync(dir)
    const ours = process.getuid === undefined || st.uid === process.getuid()
    return st.isDirectory() && ours && (st.mode & 0o022) === 0 ? dir : undefined
  } catch {
    return undefined
  }
}

const shortHash = (parts: ReadonlyArray<unknown>, n: number) => createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, n)

/**
 * The cache file's name, `<folder>-<bundle>-<runtime>-<file>.v8cache`. Runtime: this Node and its V8 flags
 * (V8 rejects a cache made under other flags, so each set keeps its own: a program run with and without,
 * say, --stack-size no longer rewrites one cache at every start). File: V8 checks only the source's
 * length, so the bundle is named by device, inode, size and its modification and change times in
 * nanoseconds; any write or replacement changes the ctime, which no user-space call can set back. Cheaper
 * than hashing the source (~7 ms of the registry's every start).
 */
export const cacheName = (file: string, env: NodeJS.ProcessEnv = process.env): { readonly prefix: string; readonly name: string } => {
  const st = fs.statSync(file, { bigint: true })
  const runtime = shortHash([process.version, process.arch, process.execArgv.join(" "), env["NODE_OPTIONS"] ?? ""], 8)
  const prefix = `${path.basename(path.dirname(file))}-${path.basename(file)}-${runtime}-`
  return { prefix, name: `${prefix}${shortHash([st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs], 16)}.v8cache` }
}

/**
 * Whether V8's flags are still as they were when the probe was made: V8 takes a cache only under the
 * flags it was made with, and checks the source only by its length, so a tiny script's cache made now is
 * taken by a same-length other script later exactly while the flags are unchanged. A worker may change
 * them for the whole process (the archive check's scavenger turns --expose-gc on, then off again).
 */
const v8FlagsProbe = (): (() => boolean) => {
  const data = new vm.Script("void 0 /*a*/").createCachedData()
  return () => !new vm.Script("void 0 /*b*/", { cachedData: data }).cachedDataRejected
}

export interface Loaded {
  /** Whether V8 accepted cached data (so compiling was skipped). */
  readonly usedCache: boolean
  /** Writes the cache for the next start (temp file and rename), once; a no-op when the cache was used or is unavailable. */
  readonly save: () => void
}

/** Runs the CommonJS bundle at `file` in this context, with cached data from `dir` if usable. */
export const loadBundle = (file: string, dir: string | undefined, opts: { readonly worker?: boolean } = {}): Loaded => {
  // A shebang is valid at the start of a file, not inside the module wrapper. An ASCII bundle (postbuild
  // writes them so) is decoded as Latin-1: the same text, copied rather than decoded from UTF-8 (~5 ms less).
  const bytes = fs.readFileSync(file)
  const source = (bytes.toString(isAscii(bytes) ? "latin1" : "utf8")).replace(/^#!.*/, "")
  const usable = dir === undefined ? undefined : safeDir(dir)
  const { prefix, name } = cacheName(file)
  const cacheFile = usable && path.join(usable, name)
  let cachedData: Buffer | undefined
  if (cacheFile) {
    try {
      cachedData = fs.readFileSync(cacheFile)
    } catch {
      // no cache yet
    }
  }
  const flagsAsNow = v8FlagsProbe()
  const script = new vm.Script(Module.wrap(source), { filename: file, ...(cachedData ? { cachedData } : {}) })
  const usedCache = cachedData !== undefined && !script.cachedDataRejected
  let saved = false
  const save = () => {
    // A cache made after the run changed V8's flags would be rejected by every new process.
    if (saved || usedCache || !cacheFile || !flagsAsNow()) return
    saved = true
    // Workers of one process may save the same cache at once: the thread makes the name unique.
    const tmp = `${cacheFile}.${process.pid}.${threadId}.tmp`
    try {
      // After the run (a worker's: before), so the functions that ran are compiled and in the cache too.
      fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 })
      fs.renameSync(tmp, cacheFile)
      // Caches of other builds of this program (under these flags) are dead weight.
      for (const n of fs.readdirSync(usable!)) if (n.startsWith(prefix) && n !== path.basename(cacheFile)) fs.rmSync(path.join(usable!, n), { force: true })
    } catch {
      fs.rmSync(tmp, { force: true })
    }
  }
  // A worker saves before its run, and only where there was no cache: see runWorkerBundle.
  if (opts.worker && cachedData === undefined) save()
  const run = script.runInThisContext() as (...args: ReadonlyArray<unknown>) => void
  const module = { exports: {} }
  run.call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file))
  return { usedCache, save: opts.worker ? () => {} : save }
}

/**
 * A worker's entry (`<name>.worker.cjs`, written by postbuild): runs the worker bundle `file`. Its cache
 * is made before the run, and only when there is none. Before: a worker ends by terminate(), where no
 * exit handler runs. Only when there is none: V8 rejects a cache made under other V8 flags, and a worker
 * may change the process's flags (the archive check's scavenger set --expose-gc and left it on until it
 * turned it off again), so a later worker of the same process would reject the first one's cache;
 * rewritten then, the cache would carry the changed flags and every new process would reject it
 * (measured: the registry's second upload rewrote it, and so on).
 */
export const runWorkerBundle = (file: string): void => void loadBundle(file, cacheDir(), { worker: true })

/**
 * The bin entry: runs `bundle`, which sits beside the launcher at `launcherUrl`; saves the cache when the
 * program says its start-up is done (src/launch/StartedUp.ts: after the current event-loop turn), else at exit.
 */
export const runBundle = (launcherUrl: string, bundle: string): void => {
  ;(globalThis as Record<symbol, unknown>)[STARTED_UP] = () => void setImmediate(() => loaded.save()).unref()
  const loaded = loadBundle(path.join(path.dirname(fileURLToPath(launcherUrl)), bundle), cacheDir())
  process.once("exit", loaded.save)
}
