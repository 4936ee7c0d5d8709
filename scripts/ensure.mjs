// Makes `npm run registry` and `npm test` work on a fresh clone: installs dependencies when
// node_modules is missing, and compiles when dist/ is missing or older than any source file.
// Compiling only when needed keeps a running test suite from rewriting dist/ under its children.
import { execSync } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"

const newest = (dir, ext) => {
  let t = 0
  if (!existsSync(dir)) return t
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) t = Math.max(t, newest(p, ext))
    else if (e.name.endsWith(ext)) t = Math.max(t, statSync(p).mtimeMs)
  }
  return t
}

const run = (cmd) => execSync(cmd, { stdio: "inherit" })

if (!existsSync("node_modules/.package-lock.json")) run("npm ci --no-audit --no-fund")
const src = Math.max(newest("src", ".ts"), statSync("package.json").mtimeMs, statSync("tsconfig.json").mtimeMs)
if (!existsSync("dist/registry/main.js") || newest("dist", ".js") < src) run("npm run -s build")
