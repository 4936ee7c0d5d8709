// Makes `npm run registry` and `npm test` work on a fresh clone: installs dependencies when
// node_modules is missing, and compiles when dist/ is missing or older than any source file.
// Compiling only when needed keeps a running test suite from rewriting dist/ under its children.
// Each step says what it does and how long it may take, and npm shows its own progress: the first
// run takes minutes (native SQLite and SSH crypto are compiled), and silence looked like a hang.
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

const say = (line) => process.stderr.write(`[setup] ${line}\n`)

const step = (what, cmd) => {
  say(`${what}: ${cmd}`)
  const start = Date.now()
  execSync(cmd, { stdio: "inherit" })
  say(`${what}: done in ${Math.round((Date.now() - start) / 1000)} s`)
}

if (!existsSync("node_modules/.package-lock.json")) {
  say("first run: installing dependencies and compiling the native SQLite and SSH crypto modules (a few minutes; npm's progress follows)")
  step("installing dependencies", "npm ci --no-audit --no-fund --foreground-scripts")
}
const src = Math.max(newest("src", ".ts"), statSync("package.json").mtimeMs, statSync("tsconfig.json").mtimeMs)
if (!existsSync("dist/registry/main.js") || newest("dist", ".js") < src) step("compiling src/ into dist/ (about 30 s)", "npm run -s build")
