import { readFileSync } from "node:fs"
import * as path from "node:path"
import { expect, it } from "vitest"
import { VERSION } from "../../src/domain/Version.js"
import { repoRoot } from "../support/registry.js"

it("is package.json's version", () => {
  expect(VERSION).toBe(JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")).version)
})
