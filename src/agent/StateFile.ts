// The deployed configuration document (-state; the same JSON the registry serves). Replaced
// atomically: temp file + fsync + rename + fsync of the directory. Also makes the STATEFILE temp
// file handed to the deploy script, removed when its scope closes.
import { Context, Effect, Layer, Option, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { StateFileError } from "../domain/AgentErrors.js"
import { type ConfigurationDocument, decodeDocument, encodeDocument } from "../domain/Document.js"
import { removeLeftovers, writeFileAtomic, writeFileSynced } from "../fs/Atomic.js"
import { AgentConfig } from "./AgentConfig.js"

export interface StateFileService {
  readonly path: string
  /** The deployed document, or none before the first deploy. */
  readonly read: Effect.Effect<Option.Option<ConfigurationDocument>, StateFileError>
  readonly write: (doc: ConfigurationDocument) => Effect.Effect<void, StateFileError>
  /** A temp file holding `doc` (for the script's STATEFILE), removed with the scope. */
  readonly temp: (doc: ConfigurationDocument) => Effect.Effect<string, StateFileError, Scope.Scope>
}

export class StateFile extends Context.Tag("agent/StateFile")<StateFile, StateFileService>() {}

const failWith = (what: string) => (e: unknown) => new StateFileError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` })

export const makeStateFile = (statePath: string, tempDir: string): StateFileService => ({
  path: statePath,
  read: Effect.tryPromise({
    try: () =>
      fs.readFile(statePath, "utf8").then(
        (text): Option.Option<string> => Option.some(text),
        (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? Option.none<string>() : Promise.reject(e))
      ),
    catch: failWith(`cannot read state file ${statePath}`)
  }).pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.succeed(Option.none<ConfigurationDocument>()),
        onSome: (text) =>
          decodeDocument(text).pipe(
            Effect.map(Option.some),
            Effect.mapError((e) => new StateFileError({ message: `state file ${statePath} is not a configuration document (${e.message}); fix or remove it` }))
          )
      })
    )
  ),
  write: (doc) =>
    Effect.tryPromise({
      try: () => writeFileAtomic(statePath, encodeDocument(doc), { mode: 0o644 }),
      catch: failWith(`cannot write state file ${statePath}`)
    }).pipe(Effect.uninterruptible), // a rename half-done by interruption would leave a stray temp file
  temp: (doc) =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          await fs.mkdir(tempDir, { recursive: true })
          const file = path.join(tempDir, `statefile-${doc.Hash.slice(0, 12)}-${randomBytes(6).toString("hex")}.json`)
          await writeFileSynced(file, encodeDocument(doc), 0o644)
          return file
        },
        catch: failWith("cannot write the script's STATEFILE")
      }),
      (file) => Effect.promise(() => fs.rm(file, { force: true }))
    )
})

/** STATEFILE copies left by an agent that was killed (SIGKILL, power loss) are removed at start. */
const removeStale = (tempDir: string) => removeLeftovers(tempDir, (n) => n.startsWith("statefile-"))

export const StateFileLive = Layer.effect(
  StateFile,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const tempDir = path.join(cfg.dir, "tmp")
    yield* Effect.promise(() => removeStale(tempDir))
    return makeStateFile(cfg.state, tempDir)
  })
)
