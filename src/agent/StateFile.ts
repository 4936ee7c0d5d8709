// The deployed configuration document (-state; the same JSON the registry serves), plus, after a
// failed deploy, a `Failed` key recording the hash not to retry (readers of the document ignore
// it; a state file without it is read as before). Replaced atomically: temp file + fsync + rename +
// fsync of the directory. Also makes the STATEFILE temp file handed to the deploy script, removed
// when its scope closes.
import { Context, Effect, Layer, Option, Schema, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { StateFileError } from "../domain/AgentErrors.js"
import { FailedRecord } from "../domain/DeployOutcome.js"
import { ConfigurationDocument, decodeDocument, encodeDocument } from "../domain/Document.js"
import { removeLeftovers, writeFileAtomic, writeFileSynced } from "../fs/Atomic.js"
import { AgentConfig } from "./AgentConfig.js"
import { MAX_DOCUMENT_BYTES } from "./RegistryClient.js"

export interface StateFileService {
  readonly path: string
  /** The deployed document, or none before the first deploy. */
  readonly read: Effect.Effect<Option.Option<ConfigurationDocument>, StateFileError>
  /** The hash recorded as failed (not to retry), if any; an unreadable record counts as none. */
  readonly readFailed: Effect.Effect<Option.Option<FailedRecord>, StateFileError>
  /** Records `doc` as deployed; with `failed`, also the hash not to retry (without, any record goes). */
  readonly write: (doc: ConfigurationDocument, failed?: FailedRecord) => Effect.Effect<void, StateFileError>
  /** A temp file holding `doc` (for the script's STATEFILE), removed with the scope. */
  readonly temp: (doc: ConfigurationDocument) => Effect.Effect<string, StateFileError, Scope.Scope>
}

export class StateFile extends Context.Tag("agent/StateFile")<StateFile, StateFileService>() {}

const failWith = (what: string) => (e: unknown) => new StateFileError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` })

/** One line for a state file written for another configuration (two agents sharing one). */
export const foreignState = (statePath: string, found: string, name: string) =>
  `state file ${statePath} belongs to configuration "${found}", not "${name}": give each agent its own -dir (or -state)`

/** Reads at most `limit` bytes; more means the file is not a state file (we write documents of a few KiB). */
const readCapped = async (file: string, limit: number): Promise<string> => {
  const fh = await fs.open(file, "r")
  try {
    const buf = Buffer.alloc(limit + 1)
    let n = 0
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n)
      if (bytesRead === 0) break
      n += bytesRead
      if (n > limit) throw new Error(`larger than ${limit} bytes`)
    }
    return buf.subarray(0, n).toString("utf8")
  } finally {
    await fh.close()
  }
}

/**
 * The state file at `statePath`; with `name`, a state file of another configuration is refused
 * instead of being taken for this one's deployed state.
 */
/** The state file's text: the document's exact keys, then `Failed` when there is a record. */
export const encodeState = (doc: ConfigurationDocument, failed?: FailedRecord): string =>
  failed === undefined
    ? encodeDocument(doc)
    : JSON.stringify({ ...Schema.encodeSync(ConfigurationDocument)(doc), Failed: Schema.encodeSync(FailedRecord)(failed) }, null, "\t") + "\n"

const decodeFailed = Schema.decodeUnknownOption(FailedRecord)

/** The `Failed` record of a state file's text; anything unreadable is no record (the hash is then retried). */
export const failedOf = (text: string): Option.Option<FailedRecord> => {
  try {
    const parsed: unknown = JSON.parse(text)
    return typeof parsed === "object" && parsed !== null && "Failed" in parsed ? decodeFailed(parsed.Failed) : Option.none()
  } catch {
    return Option.none()
  }
}

/**
 * The state file at `statePath`; with `name`, a state file of another configuration is refused
 * instead of being taken for this one's deployed state.
 */
export const makeStateFile = (statePath: string, tempDir: string, name?: string): StateFileService => {
  const readText = Effect.tryPromise({
    try: () =>
      readCapped(statePath, MAX_DOCUMENT_BYTES).then(
        (text): Option.Option<string> => Option.some(text),
        (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? Option.none<string>() : Promise.reject(e))
      ),
    catch: failWith(`cannot read state file ${statePath}`)
  })
  const read = readText.pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.succeed(Option.none<ConfigurationDocument>()),
        onSome: (text) =>
          decodeDocument(text).pipe(
            Effect.mapError((e) => new StateFileError({ message: `state file ${statePath} is not a configuration document (${e.message}); fix or remove it` })),
            Effect.filterOrFail(
              (doc) => name === undefined || doc.Name === name,
              (doc) => new StateFileError({ message: foreignState(statePath, doc.Name, name!), foreign: true })
            ),
            Effect.map(Option.some)
          )
      })
    )
  )
  return {
    path: statePath,
    read,
    readFailed: readText.pipe(Effect.map(Option.flatMap(failedOf))),
    write: (doc, failed) =>
      Effect.tryPromise({
        try: () => writeFileAtomic(statePath, encodeState(doc, failed), { mode: 0o644 }),
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
  }
}

/** STATEFILE copies left by an agent that was killed (SIGKILL, power loss) are removed at start. */
const removeStale = (tempDir: string) => removeLeftovers(tempDir, (n) => n.startsWith("statefile-"))

export const StateFileLive = Layer.effect(
  StateFile,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    const tempDir = path.join(cfg.dir, "tmp")
    yield* Effect.promise(() => removeStale(tempDir))
    return makeStateFile(cfg.state, tempDir, cfg.name)
  })
)
