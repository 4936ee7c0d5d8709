import { Effect, Option } from "effect"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { makeStateFile } from "../../src/agent/StateFile.js"
import { decodeDocument } from "../../src/domain/Document.js"
import { blob, documentText, tempDir } from "./support.js"

let dir: string
beforeEach(async () => {
  dir = await tempDir("agent-state-")
})
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true })
})

const doc = () => Effect.runPromise(decodeDocument(documentText("project1", [blob("code", "v1", [{ path: "f", content: "x" }])])))

it("round-trips the registry's document, replacing the file atomically", async () => {
  const s = makeStateFile(path.join(dir, "state.json"), path.join(dir, "tmp"))
  expect(Option.isNone(await Effect.runPromise(s.read))).toBe(true)
  const d = await doc()
  await Effect.runPromise(s.write(d))
  await Effect.runPromise(s.write(d))
  const back = await Effect.runPromise(s.read)
  expect(Option.getOrThrow(back).Hash).toBe(d.Hash)
  const text = await fs.readFile(path.join(dir, "state.json"), "utf8")
  expect(text).toMatch(/^\{\n\t"Name": "project1",\n\t"Mtime": /)
  expect(await fs.readdir(dir)).toEqual(["state.json"]) // no temp file left
})

it("a corrupt state file is a clear error, not a silent redeploy", async () => {
  await fs.writeFile(path.join(dir, "state.json"), "{not json")
  const s = makeStateFile(path.join(dir, "state.json"), path.join(dir, "tmp"))
  const err = await Effect.runPromise(Effect.flip(s.read))
  expect(err.message).toContain("is not a configuration document")
})

it("the script's STATEFILE lives as long as its scope", async () => {
  const s = makeStateFile(path.join(dir, "state.json"), path.join(dir, "tmp"))
  const d = await doc()
  let seen = ""
  await Effect.runPromise(
    Effect.scoped(
      Effect.map(s.temp(d), (file) => {
        seen = file
        expect(existsSync(file)).toBe(true)
      })
    )
  )
  expect(seen).not.toBe("")
  expect(existsSync(seen)).toBe(false)
})
