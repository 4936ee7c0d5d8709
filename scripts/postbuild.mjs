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
/**
 * `import { Effect, Layer } from "effect"` becomes `import * as Effect from "effect/Effect"` and so on. The
 * same modules, but without effect's index: where a bundle wraps modules for a dynamic import (the registry's
 * PostgreSQL and metrics modules, the agent's exporter), esbuild keeps a wrapped index whole, and its init
 * ran every effect module (fast-check's 220 included) at every start. Only effect's own re-exports are
 * rewritten (read from its index); an import that is not understood is left as it was (slower, still correct).
 */
const effectIndex = (() => {
  const text = readFileSync(new URL("../node_modules/effect/dist/esm/index.js", import.meta.url), "utf8").replace(/\/\*[\s\S]*?\*\//g, "")
  const from = new Map()
  for (const m of text.matchAll(/export \* as (\w+) from "\.\/(\w+)\.js"/g)) from.set(m[1], { ns: `effect/${m[2]}` })
  for (const m of text.matchAll(/export \{([^}]*)\} from "\.\/(\w+)\.js"/g)) for (const n of m[1].split(",")) if (n.trim()) from.set(n.trim(), { named: `effect/${m[2]}` })
  return from
})()
const EFFECT_IMPORT = /^import \{([^}]*)\} from "effect";?$/gm
const unbarrelEffect = (text) =>
  text.replace(EFFECT_IMPORT, (whole, names) => {
    const parts = names.split(",").map((n) => n.trim()).filter((n) => n !== "").map((n) => /^(\w+)(?:\s+as\s+(\w+))?$/.exec(n))
    if (parts.some((p) => p === null || !effectIndex.has(p[1]))) return whole
    return parts.map(([, name, alias]) => {
      const at = effectIndex.get(name)
      return at.ns ? `import * as ${alias ?? name} from "${at.ns}";` : `import { ${name}${alias ? ` as ${alias}` : ""} } from "${at.named}";`
    }).join(" ")
  })
const effectDirect = {
  name: "effect-direct",
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (args.path.includes(`${sep}node_modules${sep}`) && !args.path.includes(`${sep}node_modules${sep}@effect${sep}`)) return undefined
      const text = readFileSync(args.path, "utf8")
      if (!text.includes('from "effect"')) return undefined
      return { contents: unbarrelEffect(text), loader: "js", resolveDir: dirname(args.path) }
    })
  }
}
/**
 * ssh2's index requires all of ssh2 when loaded: its client with the ssh-agent code (child_process), its
 * HTTP agents (http, https, tls) and its server, ~25 ms of every start though each program uses a part.
 * In the bundles it is replaced by the same exports as getters that load their part on first use. ssh2
 * is pinned (package.json); if its index changes, the build says so and keeps it (slower, still correct).
 */
const SSH2_INDEX = `'use strict';

const {
  AgentProtocol,
  BaseAgent,
  createAgent,
  CygwinAgent,
  OpenSSHAgent,
  PageantAgent,
} = require('./agent.js');
const {
  SSHTTPAgent: HTTPAgent,
  SSHTTPSAgent: HTTPSAgent,
} = require('./http-agents.js');
const { parseKey } = require('./protocol/keyParser.js');
const {
  flagsToString,
  OPEN_MODE,
  STATUS_CODE,
  stringToFlags,
} = require('./protocol/SFTP.js');

module.exports = {
  AgentProtocol,
  BaseAgent,
  createAgent,
  Client: require('./client.js'),
  CygwinAgent,
  HTTPAgent,
  HTTPSAgent,
  OpenSSHAgent,
  PageantAgent,
  Server: require('./server.js'),
  utils: {
    parseKey,
    ...require('./keygen.js'),
    sftp: {
      flagsToString,
      OPEN_MODE,
      STATUS_CODE,
      stringToFlags,
    },
  },
};
`
const SSH2_LAZY_INDEX = `'use strict';
// deploy-tools scripts/postbuild.mjs: ssh2's index, each export loaded on first use.
const lazy = (name, load) =>
  Object.defineProperty(module.exports, name, {
    enumerable: true,
    configurable: true,
    get() {
      const value = load();
      Object.defineProperty(module.exports, name, { value, enumerable: true, writable: true, configurable: true });
      return value;
    },
  });
for (const name of ['AgentProtocol', 'BaseAgent', 'createAgent']) lazy(name, () => require('./agent.js')[name]);
lazy('Client', () => require('./client.js'));
lazy('CygwinAgent', () => require('./agent.js').CygwinAgent);
lazy('HTTPAgent', () => require('./http-agents.js').SSHTTPAgent);
lazy('HTTPSAgent', () => require('./http-agents.js').SSHTTPSAgent);
for (const name of ['OpenSSHAgent', 'PageantAgent']) lazy(name, () => require('./agent.js')[name]);
lazy('Server', () => require('./server.js'));
lazy('utils', () => {
  const { parseKey } = require('./protocol/keyParser.js');
  const { flagsToString, OPEN_MODE, STATUS_CODE, stringToFlags } = require('./protocol/SFTP.js');
  return { parseKey, ...require('./keygen.js'), sftp: { flagsToString, OPEN_MODE, STATUS_CODE, stringToFlags } };
});
`
const ssh2LazyIndex = {
  name: "ssh2-lazy-index",
  setup(b) {
    b.onLoad({ filter: /[\\/]ssh2[\\/]lib[\\/]index\.js$/ }, (args) => {
      const text = readFileSync(args.path, "utf8")
      if (text !== SSH2_INDEX) return { contents: text, loader: "js", warnings: [{ text: `ssh2's index changed; loaded whole (${args.path})` }] }
      return { contents: SSH2_LAZY_INDEX, loader: "js" }
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

/**
 * The bundle in ASCII: esbuild escapes strings but leaves comments (and a regex's `µ`) as they were, and one
 * `…` in a comment made V8 hold the whole ~2.3 MB source as a two-byte string, decoded from UTF-8 at every
 * start (~5 ms of each program's start; CodeCache.ts reads an ASCII bundle as Latin-1, a plain copy). A
 * `\uXXXX` escape means the same in a comment, a regex, a string or a template's cooked text; only a
 * template's `.raw` would see it, which no bundle reads (the build refuses one that does).
 */
const asciiOnly = (file) => {
  const text = readFileSync(file, "utf8")
  if (!/[^\x00-\x7f]/.test(text)) return
  if (/String\.raw|\.raw\[/.test(text)) throw new Error(`${file}: non-ASCII text and a template's .raw; cannot escape it safely`)
  writeFileSync(file, text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`))
}

/** Bundles `entry` to `out` through a temp file (same base name, so the sourceMappingURL stays right). */
const bundle = async (entry, out, options) => {
  const tmp = `dist/.bundle-${process.pid}/${out.replaceAll("/", "_")}/${basename(out)}`
  await build({ entryPoints: [entry], outfile: tmp, bundle: true, platform: "node", target: "node20", external, plugins: [nativeAddons, pgNoCloudflareProbe, ssh2LazyIndex, effectDirect], sourcemap: "linked", logLevel: "warning", ...options })
  if (options.platform !== "browser") asciiOnly(tmp)
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
