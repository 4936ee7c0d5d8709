// `verify`: a read-only consistency check of the whole registry. One line per problem.
//
// Checked: every blob's content hashes to its name; every version's blob exists; every
// configuration has a current state whose layers name existing versions with the same blob hash;
// every recorded state's hash matches its layers. Not problems: blobs no version references (an
// interrupted addver leaves one; retention removes it) and past states naming versions retention
// removed (rollback refuses those with a clear message).
import { Effect, Stream } from "effect"
import { createHash } from "node:crypto"
import { configHash } from "../domain/ConfigHash.js"
import type { StorageError } from "../domain/Errors.js"
import { BlobStore } from "./BlobStore.js"
import { Storage } from "./Storage.js"

export interface VerifyReport {
  readonly problems: ReadonlyArray<string>
  readonly blobs: number
  readonly versions: number
  readonly configurations: number
}

const sha256Of = (bytes: Stream.Stream<Uint8Array, StorageError>) =>
  Stream.runFold(bytes, createHash("sha256"), (h, chunk) => h.update(chunk)).pipe(Effect.map((h) => h.digest("hex")))

export const verify: Effect.Effect<VerifyReport, StorageError, Storage | BlobStore> = Effect.gen(function* () {
  const storage = yield* Storage
  const blobs = yield* BlobStore
  const problems: Array<string> = []

  // The registry may be running. The metadata is read in one transaction, so it is one consistent
  // snapshot; blobs are hashed outside it (that takes long). Retention may remove an unreferenced
  // blob, or delver+retention a version and its blob, while we hash: whatever looks missing is
  // checked again before it is reported, so a concurrent cleanup is not mistaken for damage.
  const snapshot = yield* storage.transaction(
    Effect.all({
      versions: storage.allVersions,
      names: storage.configurationNames,
      current: storage.currentStates,
      states: storage.allStates
    })
  )

  const stored = yield* blobs.list
  let checked = 0
  for (const hash of stored) {
    const actual = yield* sha256Of(blobs.stream(hash)).pipe(Effect.option)
    if (actual._tag === "None") {
      if (!(yield* blobs.has(hash))) continue // removed meanwhile
      problems.push(`blob ${hash}: cannot be read`)
    } else if (actual.value !== hash) problems.push(`blob ${hash}: content has sha256 ${actual.value}`)
    checked++
  }

  const present = new Set<string>(stored)
  const blobless = snapshot.versions.filter((v) => !present.has(v.hash))
  const later = blobless.length === 0 ? [] : yield* storage.allVersions
  for (const v of blobless) {
    const stillThere = later.some((w) => w.component === v.component && w.version === v.version && w.hash === v.hash)
    if (stillThere && !(yield* blobs.has(v.hash))) {
      problems.push(`version "${v.version}" of component "${v.component}": blob ${v.hash} is missing`)
    }
  }

  const byName = new Map(snapshot.versions.map((v) => [`${v.component}\u0000${v.version}`, v.hash]))
  const withState = new Set(snapshot.current.map((s) => s.configuration))
  for (const name of snapshot.names) if (!withState.has(name)) problems.push(`configuration "${name}": current state is missing`)
  for (const s of snapshot.current) {
    for (const l of s.layers) {
      const hash = byName.get(`${l.component}\u0000${l.version}`)
      if (hash === undefined) problems.push(`configuration "${s.configuration}": layer ${l.component}:${l.version} names a missing version`)
      else if (hash !== l.hash)
        problems.push(`configuration "${s.configuration}": layer ${l.component}:${l.version} expects blob ${l.hash}, the version has ${hash}`)
    }
  }

  for (const s of snapshot.states) {
    if (configHash(s.layers.map((l) => l.hash)) !== s.hash) {
      const owner = s.configuration === "" ? "of a deleted configuration" : `of configuration "${s.configuration}"`
      problems.push(`state ${s.id} ${owner}: hash ${s.hash} does not match its layers`)
    }
  }

  return { problems, blobs: checked, versions: snapshot.versions.length, configurations: snapshot.names.length }
})

/** The report as printed by the `verify` command (console and `deploy-registry verify -dir D`); exit 1 on any problem. */
export const renderReport = (r: VerifyReport): { readonly output: string; readonly exitCode: 0 | 1 } =>
  r.problems.length === 0
    ? { output: `ok: ${r.blobs} blobs, ${r.versions} versions, ${r.configurations} configurations checked\n`, exitCode: 0 }
    : {
        output: r.problems.map((p) => `${p}\n`).join("") + `${r.problems.length} problem${r.problems.length === 1 ? "" : "s"} found\n`,
        exitCode: 1
      }
