// Make the compiled entry points executable so `npm link`/bin shims and direct runs work.
import { chmodSync, existsSync } from "node:fs"
import pkg from "../package.json" with { type: "json" }

for (const file of Object.values(pkg.bin)) {
  if (existsSync(file)) chmodSync(file, 0o755)
}
