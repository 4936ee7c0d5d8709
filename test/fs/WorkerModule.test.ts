// Workers started from the sources (vitest, `node --import tsx`): bundled as CommonJS, run through the code
// cache like the build's, and without tsx's loader in their Node flags.
import { describe, expect, it } from "@effect/vitest"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import { workerUrl, withoutTsx } from "../../src/fs/WorkerModule.js"
import { repoRoot } from "../support/registry.js"

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

  it("a second process reuses the bundle while no input changed, and bundles again when one did", async () => {
    // Sources under the checkout (esbuild resolves from the caller), the shared directory under a fresh TMPDIR;
    // a fresh import of the module is a fresh process's view (nothing remembered in memory).
    const root = mkdtempSync(path.join(repoRoot, "node_modules", ".cache", "worker-module-test-"))
    const tmp = mkdtempSync(path.join(tmpdir(), "worker-module-tmp-"))
    const savedTmp = process.env.TMPDIR
    process.env.TMPDIR = tmp
    try {
      mkdirSync(path.join(root, "w"))
      writeFileSync(path.join(root, "w", "dep.ts"), `export const v: string = "one"\n`)
      writeFileSync(path.join(root, "w", "Tiny.worker.ts"), `import { parentPort } from "node:worker_threads"\nimport { v } from "./dep.js"\nparentPort!.postMessage(v)\n`)
      const caller = pathToFileURL(path.join(root, "a", "caller.ts")).href
      let n = 0
      const fresh = async () => {
        const m = (await import(/* @vite-ignore */ `${new URL("../../src/fs/WorkerModule.ts", import.meta.url).href}?process=${++n}`)) as typeof import("../../src/fs/WorkerModule.js")
        const url = m.workerUrl(caller, "w/Tiny.worker")
        const reply = await new Promise((resolve, reject) => {
          const w = new Worker(url)
          w.once("message", (v) => void w.terminate().then(() => resolve(v)))
          w.once("error", reject)
        })
        const shared = path.join(tmp, readdirSync(tmp)[0]!)
        const manifest = readdirSync(shared).filter((f) => f.endsWith(".inputs.json"))
        expect(manifest).toHaveLength(1)
        return { url: url.href, reply, manifestIno: statSync(path.join(shared, manifest[0]!)).ino }
      }
      const first = await fresh()
      expect(first.reply).toBe("one")
      // No input changed: the same entry, and the manifest was not written again (esbuild did not run).
      expect(await fresh()).toEqual(first)
      writeFileSync(path.join(root, "w", "dep.ts"), `export const v: string = "two!"\n`)
      const third = await fresh()
      expect(third.reply).toBe("two!")
      expect(third.url).not.toBe(first.url)
      expect(third.manifestIno).not.toBe(first.manifestIno)
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = savedTmp
      rmSync(root, { recursive: true, force: true })
      rmSync(tmp, { recursive: true, force: true })
    }
  })
})
