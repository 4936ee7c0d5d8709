// Patches to dependencies, applied at install (postinstall) and before every build (prebuild), so a clean
// clone, `npm ci` and the nix build all run the same code. Idempotent: an applied patch is recognised and
// left alone. Loud: if neither the original nor the patched text is found (ssh2 was upgraded or changed),
// this exits 1 naming the patch, so the upgrade is noticed and the patch re-checked.
import { readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

const patches = [
  {
    // ssh2 1.17.0's EXT_INFO server-sig-algs lacks a comma ("…ecdsa-sha2-nistp521rsa-sha2-512,…"), so a
    // client limited to rsa-sha2-512 finds no mutual algorithm; it also advertises ssh-rsa (SHA-1) and
    // ssh-dss, which the registry refuses (src/registry/Auth.ts). Advertise exactly what is accepted.
    name: "ssh2 server-sig-algs",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/Protocol.js",
    from: `    'ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521'
      + 'rsa-sha2-512,rsa-sha2-256,ssh-rsa,ssh-dss';`,
    to: `    'ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,'
      + 'rsa-sha2-512,rsa-sha2-256'; // patched by deploy-tools scripts/patch-deps.mjs`
  },
  {
    // With an RSA host key, ssh2's server offers ssh-rsa (SHA-1) host key signatures even when the
    // configured serverHostKey list leaves it out ("fall back to the lowest priority"). Honour the list.
    name: "ssh2 host key algorithms",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/server.js",
    from: `        if (sha1Pos === -1) {
          // Fall back to giving SHA1 the lowest priority
          sha1Pos = Infinity;
        }`,
    to: `        // ssh-rsa only when configured (patched by deploy-tools scripts/patch-deps.mjs)`
  }
]

let failed = false
for (const p of patches) {
  const root = require.resolve(`${p.package}/package.json`).replace(/package\.json$/, "")
  const { version } = JSON.parse(readFileSync(`${root}package.json`, "utf8"))
  const file = `${root}${p.file}`
  const text = readFileSync(file, "utf8")
  if (version !== p.version) {
    console.error(`patch-deps: ${p.name}: ${p.package} is ${version}, the patch is for ${p.version}; re-check it`)
    failed = true
  } else if (text.includes(p.to)) {
    // already applied
  } else if (text.split(p.from).length === 2) {
    writeFileSync(file, text.replace(p.from, p.to))
    console.error(`patch-deps: applied ${p.name} to ${p.package}/${p.file}`)
  } else {
    console.error(`patch-deps: ${p.name}: the text to patch is not in ${p.package}/${p.file}; re-check the patch`)
    failed = true
  }
}
if (failed) process.exit(1)
