// Workers started from the sources (vitest, `node --import tsx`): bundled as CommonJS, run through the code
// cache like the build's, and without tsx's loader in their Node flags.
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { workerUrl, withoutTsx } from "../../src/fs/WorkerModule.js"

describe("WorkerModule", () => {
  it("drops tsx's loader from the flags a worker inherits, in each spelling, and keeps the rest", () => {
    expect(withoutTsx(["--import", "tsx", "--conditions", "node"])).toEqual(["--conditions", "node"])
    expect(withoutTsx(["--import=tsx", "--require", "/x/node_modules/tsx/dist/cjs/index.cjs", "--stack-size=900"])).toEqual(["--stack-size=900"])
    expect(withoutTsx(["--loader", "tsx/esm", "--import", "./setup.mjs"])).toEqual(["--import", "./setup.mjs"])
    expect(withoutTsx(["--import", "tsxish", "--import=my-tsx-helper"])).toEqual(["--import", "tsxish", "--import=my-tsx-helper"])
  })

  it("a large worker from the sources starts through the code cache, a small one from its CommonJS bundle", () => {
    const large = fileURLToPath(workerUrl(import.meta.url.replace(/test\/fs\/[^/]+$/, "src/archive/LayerCheck.ts"), "archive/LayerCheck.worker"))
    expect(large.endsWith(".cjs")).toBe(true)
    expect(readFileSync(large, "utf8")).toMatch(/^require\(".*CodeCache-[0-9a-f]{16}\.cjs"\)\.runWorkerBundle\(".*LayerCheck\.worker-[0-9a-f]{16}\.bundle\.cjs"\)/)
    const small = fileURLToPath(workerUrl(import.meta.url.replace(/test\/fs\/[^/]+$/, "src/fs/FileHasher.ts"), "fs/FileHasher.worker"))
    expect(readFileSync(small, "utf8")).not.toContain("runWorkerBundle")
    expect(readFileSync(small, "utf8")).toContain("__bundleUrl")
  })
})
