// CI check: every package in package-lock.json carries its download URL (`resolved`) and hash
// (`integrity`). The flake's importNpmLock fetches each package from exactly that URL and checks that
// hash; a lock written by an npm set to omit-lockfile-registry-resolved has no URLs, and the flake
// stops with "attribute 'resolved' missing". The project .npmrc keeps npm writing them.
// usage: node scripts/check-lock.mjs [path/to/package-lock.json]
import { readFileSync } from "node:fs"

const file = process.argv[2] ?? "package-lock.json"
let lock
try {
  lock = JSON.parse(readFileSync(file, "utf8"))
} catch (e) {
  console.error(`check-lock: cannot read ${file}: ${e.message}`)
  process.exit(2)
}
if (typeof lock.packages !== "object" || lock.packages === null) {
  console.error(`check-lock: ${file} has no "packages" (lockfileVersion ${lock.lockfileVersion}); npm >= 7 writes one`)
  process.exit(1)
}

const problems = []
for (const [path, entry] of Object.entries(lock.packages)) {
  if (path === "") continue // the project itself
  if (entry.link === true) {
    // a workspace or file: link; importNpmLock takes it from the source tree
    if (typeof entry.resolved !== "string") problems.push(`${path}: link without "resolved"`)
    continue
  }
  if (typeof entry.resolved !== "string" || !/^https:\/\//.test(entry.resolved)) {
    problems.push(`${path}: ${entry.resolved === undefined ? 'no "resolved"' : `"resolved" is not an https URL: ${entry.resolved}`}`)
  }
  if (typeof entry.integrity !== "string" || !/^sha(256|384|512)-[A-Za-z0-9+/]+=*$/.test(entry.integrity)) {
    problems.push(`${path}: ${entry.integrity === undefined ? 'no "integrity"' : `malformed "integrity": ${entry.integrity}`}`)
  }
}

const count = Object.keys(lock.packages).length - 1
if (problems.length > 0) {
  for (const p of problems.slice(0, 20)) console.error(`check-lock: ${p}`)
  if (problems.length > 20) console.error(`check-lock: … and ${problems.length - 20} more`)
  console.error(
    `check-lock: ${problems.length} problem(s) in ${file}; regenerate the lock with the project .npmrc ` +
      "(omit-lockfile-registry-resolved=false) in effect, e.g. npm install --package-lock-only"
  )
  process.exit(1)
}
console.log(`check-lock: ${count} packages, each with an https "resolved" and an "integrity"`)
