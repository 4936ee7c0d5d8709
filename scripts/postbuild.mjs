// After tsc: bundle each program's entry point with esbuild so it starts fast (one file instead of
// hundreds of effect modules: ~0.25 s instead of ~0.7 s for `-h`, and ~25% less memory), then make it
// executable. Native and CommonJS-with-native packages stay external and load from node_modules.
import { build } from "esbuild"
import { chmodSync, readFileSync, renameSync, rmSync } from "node:fs"
import { basename } from "node:path"
import pkg from "../package.json" with { type: "json" }

const banner = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"

// Worker threads are loaded by path (new URL(..., import.meta.url)), so each is its own bundle too.
const workers = ["dist/archive/LayerCheck.worker.js"]

for (const file of [...Object.values(pkg.bin), ...workers]) {
  // Already a bundle (another build ran postbuild after this build's tsc): bundling it again would break it.
  if (readFileSync(file, "utf8").includes("__createRequire")) continue
  // Same base name as the target, so the bundle's sourceMappingURL stays right after the rename.
  const tmp = `dist/.bundle-${process.pid}/${file.replaceAll("/", "_")}/${basename(file)}`
  await build({
    entryPoints: [file],
    outfile: tmp,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["ssh2", "better-sqlite3", "cpu-features"],
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: banner },
    sourcemap: "linked",
    logLevel: "warning"
  })
  renameSync(tmp, file)
  renameSync(`${tmp}.map`, `${file}.map`)
  chmodSync(file, 0o755)
}
rmSync(`dist/.bundle-${process.pid}`, { recursive: true, force: true })
