// After tsc: bundle each program's entry point with esbuild so it starts fast (one file instead of
// hundreds of effect modules), then put a small launcher at the bin path that runs the bundle through
// V8's code cache (src/launch/CodeCache.ts). The bundle is CommonJS because Node 20 has a code cache
// only for scripts. Worker modules (`*.worker.js`, started by path: src/fs/WorkerModule.ts) are bundled
// the same way, each with a CommonJS launcher. ssh2's JavaScript is in the bundles (loading it and its dependencies from
// node_modules cost ~70 ms of every start); native addons (.node files, cpu-features, better-sqlite3) load
// from node_modules.
import { build } from "esbuild"
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { basename, dirname, join, resolve, sep } from "node:path"
import pkg from "../package.json" with { type: "json" }

const external = ["better-sqlite3", "cpu-features"]
/**
 * A bundled package's `require("./build/Release/x.node")` stays a require, rewritten to the package path
 * (`ssh2/lib/protocol/crypto/build/Release/sshcrypto.node`) so it resolves from node_modules at run time,
 * wherever the bundle is installed. The require sits in ssh2's own try/catch (JavaScript fallback).
 */
const nativeAddons = {
  name: "native-addons",
  setup(b) {
    b.onResolve({ filter: /\.node$/ }, (args) => {
      const file = resolve(args.resolveDir, args.path)
      const at = file.lastIndexOf(`${sep}node_modules${sep}`)
      if (at === -1) throw new Error(`native addon outside node_modules: ${file}`)
      return { path: file.slice(at + "/node_modules/".length).split(sep).join("/"), external: true }
    })
  }
}
const BUNDLE = "main.bundle.cjs"
const launcher = `#!/usr/bin/env node
// Written by scripts/postbuild.mjs: runs ${BUNDLE}, the bundled program, through V8's code cache.
import { runBundle } from "../launch/CodeCache.js"

runBundle(import.meta.url, ${JSON.stringify(BUNDLE)})
`
/** Below this size a worker bundle runs without the code cache (measured: the launcher cost ~3 ms more per start). */
const SMALL_WORKER = 64 * 1024
const workerLauncher = (bundle) => `// Written by scripts/postbuild.mjs: runs ${bundle}, the bundled worker, through V8's code cache.
require("../launch/CodeCache.cjs").runWorkerBundle(require("node:path").join(__dirname, ${JSON.stringify(bundle)}))
`

/** Bundles `entry` to `out` through a temp file (same base name, so the sourceMappingURL stays right). */
const bundle = async (entry, out, options) => {
  const tmp = `dist/.bundle-${process.pid}/${out.replaceAll("/", "_")}/${basename(out)}`
  await build({ entryPoints: [entry], outfile: tmp, bundle: true, platform: "node", target: "node20", external, plugins: [nativeAddons, pgNoCloudflareProbe], sourcemap: "linked", logLevel: "warning", ...options })
  renameSync(tmp, out)
  renameSync(`${tmp}.map`, `${out}.map`)
}
/**
 * pg (under @effect/sql-pg) decides at load whether it runs on Cloudflare Workers by constructing a fetch
 * `Response`, which loads Node's whole fetch implementation: ~50 ms of CPU at every registry start, SQLite or
 * not. The bundles run on Node only, so that probe is dropped (if pg's text changes, the build says so and
 * the bundle keeps the probe: slower, still correct).
 */
const PG_PROBE = "typeof Response === 'function'"
const pgNoCloudflareProbe = {
  name: "pg-no-cloudflare-probe",
  setup(b) {
    b.onLoad({ filter: /[\\/]pg[\\/]lib[\\/]stream\.js$/ }, (args) => {
      const text = readFileSync(args.path, "utf8")
      if (!text.includes(PG_PROBE)) return { contents: text, loader: "js", warnings: [{ text: `pg's Cloudflare probe changed; not dropped (${args.path})` }] }
      return { contents: text.replace(PG_PROBE, "false /* Node only: deploy-tools scripts/postbuild.mjs */"), loader: "js" }
    })
  }
}

for (const file of Object.values(pkg.bin)) {
  // Already a launcher (another build ran postbuild after this build's tsc): tsc's output is in the bundle.
  if (readFileSync(file, "utf8") === launcher) continue
  const out = join(dirname(file), BUNDLE)
  await bundle(file, out, {
    format: "cjs",
    // Module-relative paths (workers, require.resolve) keep working from the bundle's own location.
    define: { "import.meta.url": "__bundleUrl" },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' }
  })
  rmSync(`${file}.map`, { force: true })
  writeFileSync(`${file}.tmp`, launcher)
  renameSync(`${file}.tmp`, file)
  chmodSync(file, 0o755)
}

// The metrics exporter (src/metrics/LoadExposition.ts requires it at run time, only with -metrics or
// -metrics-file): its own bundle, so the programs' bundles (and their start-up) stay without it.
await bundle("dist/metrics/Exposition.js", "dist/metrics/exposition.bundle.cjs", { format: "cjs" })

// The web view's assets (`deployctl web` serves dist/web/assets/*): the client script bundled for the
// browser (tsc's ES module output of it is replaced), and the stylesheet copied beside it.
mkdirSync("dist/web/assets", { recursive: true })
await bundle("src/web/assets/app.ts", "dist/web/assets/app.js", { platform: "browser", format: "iife", target: "es2020", minify: true })
copyFileSync("src/web/assets/app.css", "dist/web/assets/app.css.tmp")
renameSync("dist/web/assets/app.css.tmp", "dist/web/assets/app.css")

// Workers (`*.worker.js` from tsc, started by WorkerModule.ts as `*.worker.cjs`): each is bundled as
// CommonJS to `<name>.worker.bundle.cjs` and started by a launcher `<name>.worker.cjs` that runs it through
// the code cache, as the programs are (an ES module worker was compiled at every start: ~30 ms of the
// archive check's; a CommonJS entry also spares the worker Node's ES module loader). tsc's `.worker.js` is
// removed, so a second postbuild after one tsc finds nothing to redo.
await bundle("src/launch/CodeCache.ts", "dist/launch/CodeCache.cjs", { format: "cjs" })
const workers = readdirSync("dist", { recursive: true }).filter((f) => f.endsWith(".worker.js")).map((f) => join("dist", f))
for (const file of workers) {
  const base = basename(file, ".js")
  const entry = join(dirname(file), `${base}.cjs`)
  const inner = join(dirname(file), `${base}.bundle.cjs`)
  const cjs = {
    format: "cjs",
    define: { "import.meta.url": "__bundleUrl" },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' }
  }
  await bundle(file, inner, cjs)
  if (statSync(inner).size < SMALL_WORKER) {
    // Compiles in less time than the cache takes to look up (FileHasher's, TreeWriter's): the bundle is the entry.
    await bundle(file, entry, cjs)
    rmSync(inner)
    rmSync(`${inner}.map`)
  } else {
    writeFileSync(`${entry}.tmp`, workerLauncher(`${base}.bundle.cjs`))
    renameSync(`${entry}.tmp`, entry)
  }
  rmSync(file, { force: true })
  rmSync(`${file}.map`, { force: true })
}
rmSync(`dist/.bundle-${process.pid}`, { recursive: true, force: true })
