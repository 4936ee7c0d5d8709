// After tsc: bundle each program's entry point with esbuild so it starts fast (one file instead of
// hundreds of effect modules), then put a small launcher at the bin path that runs the bundle through
// V8's code cache (src/launch/CodeCache.ts). The bundle is CommonJS because Node 20 has a code cache
// only for scripts. Native and CommonJS-with-native packages stay external and load from node_modules.
import { build } from "esbuild"
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { basename, dirname, join } from "node:path"
import pkg from "../package.json" with { type: "json" }

const BUNDLE = "main.bundle.cjs"
const launcher = `#!/usr/bin/env node
// Written by scripts/postbuild.mjs: runs ${BUNDLE}, the bundled program, through V8's code cache.
import { runBundle } from "../launch/CodeCache.js"

runBundle(import.meta.url, ${JSON.stringify(BUNDLE)})
`

for (const file of Object.values(pkg.bin)) {
  // Already a launcher (another build ran postbuild after this build's tsc): tsc's output is in the bundle.
  if (readFileSync(file, "utf8") === launcher) continue
  const out = join(dirname(file), BUNDLE)
  // Same base name as the target, so the bundle's sourceMappingURL stays right after the rename.
  const tmp = `dist/.bundle-${process.pid}/${file.replaceAll("/", "_")}/${basename(out)}`
  await build({
    entryPoints: [file],
    outfile: tmp,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["ssh2", "better-sqlite3", "cpu-features"],
    // Module-relative paths (workers, require.resolve) keep working from the bundle's own location.
    define: { "import.meta.url": "__bundleUrl" },
    banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
    sourcemap: "linked",
    logLevel: "warning"
  })
  renameSync(tmp, out)
  renameSync(`${tmp}.map`, `${out}.map`)
  rmSync(`${file}.map`, { force: true })
  writeFileSync(`${file}.tmp`, launcher)
  renameSync(`${file}.tmp`, file)
  chmodSync(file, 0o755)
}
rmSync(`dist/.bundle-${process.pid}`, { recursive: true, force: true })

// Worker threads are loaded by path (new URL("../archive/…", import.meta.url) from a program's
// bundle), so each is its own bundle, in place: an ES module like the rest of dist/.
const workers = ["dist/archive/LayerCheck.worker.js"]
const esmBanner = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
for (const file of workers) {
  // Already a bundle (another build ran postbuild after this build's tsc): bundling it again would break it.
  if (readFileSync(file, "utf8").includes("__createRequire")) continue
  const tmp = `dist/.bundle-${process.pid}/${file.replaceAll("/", "_")}/${basename(file)}`
  await build({
    entryPoints: [file],
    outfile: tmp,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["ssh2", "better-sqlite3", "cpu-features"],
    banner: { js: esmBanner },
    sourcemap: "linked",
    logLevel: "warning"
  })
  renameSync(tmp, file)
  renameSync(`${tmp}.map`, `${file}.map`)
}
rmSync(`dist/.bundle-${process.pid}`, { recursive: true, force: true })
