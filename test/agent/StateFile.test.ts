import { Effect, Option } from "effect"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterEach, beforeEach, expect, it } from "vitest"
import { makeStateFile } from "../../src/agent/StateFile.js"
import { FailedRecord, StepFailure } from "../../src/domain/DeployOutcome.js"
import { decodeDocument, encodeDocument } from "../../src/domain/Document.js"
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

it("records a failed hash next to the document, compatibly: today's files read as before, and document readers ignore the record", async () => {
  const file = path.join(dir, "state.json")
  const s = makeStateFile(file, path.join(dir, "tmp"))
  const d = await doc()
  // A state file as written before the record existed: no record, the same document.
  await fs.writeFile(file, encodeDocument(d))
  expect(Option.getOrThrow(await Effect.runPromise(s.read)).Hash).toBe(d.Hash)
  expect(Option.isNone(await Effect.runPromise(s.readFailed))).toBe(true)

  const record = new FailedRecord({
    Hash: "b".repeat(64),
    Outcome: "rolled-back",
    Time: new Date("2026-12-03T10:00:00Z"),
    Failure: new StepFailure({ Step: "check", Status: "exit status 1", Lines: ["db unreachable"] })
  })
  await Effect.runPromise(s.write(d, record))
  const text = await fs.readFile(file, "utf8")
  expect(text.startsWith(encodeDocument(d).replace(/\n}\n$/, ""))).toBe(true) // the document's keys first, as before
  expect(JSON.parse(text).Failed).toEqual({ Hash: record.Hash, Outcome: "rolled-back", Time: "2026-12-03T10:00:00Z", Failure: { Step: "check", Status: "exit status 1", Lines: ["db unreachable"] } })
  expect((await Effect.runPromise(decodeDocument(text))).Hash).toBe(d.Hash) // what an older agent reads
  expect(Option.getOrThrow(await Effect.runPromise(s.readFailed))).toEqual(record)
  // A successful deploy drops the record; an unreadable record is no record (the hash is retried).
  await Effect.runPromise(s.write(d))
  expect(await fs.readFile(file, "utf8")).toBe(encodeDocument(d))
  await fs.writeFile(file, text.replace('"Outcome": "rolled-back"', '"Outcome": "maybe"'))
  expect(Option.isNone(await Effect.runPromise(s.readFailed))).toBe(true)
})
