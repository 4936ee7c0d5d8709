// `npm run release`: a self-contained tarball of the four programs for linux-x64 servers, so a
// server needs Node.js only (no compiler, no npm install). It holds the esbuild bundles from dist/
// and the native modules they load (better-sqlite3, ssh2 with its sshcrypto binding and
// cpu-features) with their runtime dependencies, plus install.sh, which links the programs into
// /usr/local/bin. Unpacked into /opt/deploy-tools, the project's install location (docs/agent.md,
// docs/registry.md and the systemd units use /usr/local/bin/<program>). Writes
// dist-release/deploy-tools-<version>-linux-x64.tar.gz and its .sha256 (`sha256sum -c` format).
//   node scripts/release.mjs [-out DIR]
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { basename, dirname, join, relative, resolve } from "node:path"

const root = resolve(dirname(new URL(import.meta.url).pathname), "..")
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"))
const outFlag = process.argv.indexOf("-out")
const out = resolve(outFlag > 0 ? process.argv[outFlag + 1] : join(root, "dist-release"))
const say = (line) => process.stderr.write(`[release] ${line}\n`)

// Native modules are the build machine's: the artifact is only as portable as this machine.
if (process.platform !== "linux" || process.arch !== "x64") {
  say(`the release is for linux-x64 and must be built on linux-x64 (this is ${process.platform}-${process.arch})`)
  process.exit(1)
}

execFileSync(process.execPath, [join(root, "scripts/ensure.mjs")], { cwd: root, stdio: "inherit" })

/**
 * Modules loaded from node_modules at run time: those the bundles leave external
 * (scripts/postbuild.mjs), and tar, which deployctl's archive check resolves by path for its worker.
 */
const externals = ["better-sqlite3", "ssh2", "cpu-features", "tar"]
/** Needed only to build or fetch native code, never at run time. */
const buildOnly = new Set(["prebuild-install", "nan", "buildcheck"])

/** Each external and its runtime dependencies, as package directories. */
const closure = () => {
  const dirs = new Map()
  const visit = (name, from) => {
    if (buildOnly.has(name)) return
    let manifest
    try {
      manifest = createRequire(join(from, "package.json")).resolve(`${name}/package.json`)
    } catch {
      return // an optional dependency that is not installed (cpu-features where it cannot build)
    }
    const dir = dirname(manifest)
    if (dirs.has(dir)) return
    dirs.set(dir, name)
    const p = JSON.parse(readFileSync(manifest, "utf8"))
    for (const dep of Object.keys({ ...p.dependencies, ...p.optionalDependencies })) visit(dep, dir)
  }
  for (const e of externals) visit(e, root)
  return dirs
}

const version = pkg.version
const name = `deploy-tools-${version}-linux-x64`
const stage = join(out, name)
rmSync(stage, { recursive: true, force: true })
mkdirSync(stage, { recursive: true })

// dist/ as built: each bin is a launcher beside its bundle (scripts/postbuild.mjs), which loads
// dist/launch/ and starts the workers' CommonJS bundles (also postbuild's); source maps stay behind.
cpSync(join(root, "dist"), join(stage, "dist"), { recursive: true, filter: (src) => !src.endsWith(".map") && !basename(src).startsWith(".") })
for (const file of Object.values(pkg.bin)) chmodSync(join(stage, file), 0o755)

for (const [dir] of closure()) {
  const native = existsSync(join(dir, "binding.gyp"))
  const target = join(stage, relative(root, dir))
  cpSync(dir, target, {
    recursive: true,
    // Of a native package keep the JavaScript and the built .node files: not its C sources, the
    // vendored SQLite (deps/), object files or test extensions.
    filter: (src) => {
      const rel = relative(dir, src)
      if (rel === "") return true
      const top = rel.split("/")[0]
      if (top === "node_modules") return false // nested packages are visited on their own
      if (!native) return true
      if (["deps", "src", "test", "docs", "benchmark"].includes(top)) return false
      if (/(^|\/)build\//.test(`${rel}/`) || rel.endsWith("/build") || rel === "build") {
        return !/obj\.target|\/obj(\/|$)|\.deps|\/test_extension\.node$|\.(o|mk|a|d)$|Makefile$|\.gypi?$/.test(rel)
      }
      return true
    }
  })
}

writeFileSync(
  join(stage, "package.json"),
  JSON.stringify({ name: "deploy-tools", version, type: "module", private: true, bin: pkg.bin }, null, 2) + "\n"
)
// The native modules work with this Node.js ABI only; install.sh checks the server's node against it.
writeFileSync(join(stage, "NODE_ABI"), `${process.versions.modules}\n`)
writeFileSync(join(stage, "NODE_VERSION"), `${process.version}\n`)
writeFileSync(
  join(stage, "install.sh"),
  `#!/bin/sh
# Links the four programs of this release into $BINDIR (default /usr/local/bin), after checking
# that the node on PATH can load its native modules. Run from where the release was unpacked:
#   tar xzf ${name}.tar.gz -C /opt/deploy-tools && /opt/deploy-tools/install.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bindir=\${BINDIR:-/usr/local/bin}
command -v node >/dev/null || { echo "install.sh: node is not on PATH; install Node.js $(cat "$here/NODE_VERSION" | cut -d. -f1) first" >&2; exit 1; }
abi=$(node -p process.versions.modules)
if [ "$abi" != "$(cat "$here/NODE_ABI")" ]; then
  echo "install.sh: this release was built for Node.js $(cat "$here/NODE_VERSION") (module ABI $(cat "$here/NODE_ABI")); this node is $(node -v) (ABI $abi)" >&2
  exit 1
fi
mkdir -p "$bindir"
${Object.entries(pkg.bin)
  .map(([prog, file]) => `ln -sfn "$here/${file}" "$bindir/${prog}"`)
  .join("\n")}
for p in ${Object.keys(pkg.bin).join(" ")}; do "$bindir/$p" --version; done
`
)
chmodSync(join(stage, "install.sh"), 0o755)

const tarball = join(out, `${name}.tar.gz`)
// Owned by root, no build machine's user names or times in the listing that matter for install.
execFileSync("tar", ["czf", tarball, "--owner=0", "--group=0", "--numeric-owner", "-C", stage, "."], { stdio: "inherit" })
const sum = createHash("sha256").update(readFileSync(tarball)).digest("hex")
writeFileSync(`${tarball}.sha256`, `${sum}  ${basename(tarball)}\n`)
rmSync(stage, { recursive: true, force: true })
say(`${tarball}`)
say(`${tarball}.sha256: ${sum}`)
