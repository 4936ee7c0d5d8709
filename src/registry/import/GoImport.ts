// What a Go deploy-registry's state.db holds, read into our model: versions per component and every
// saved state of every configuration. Pure: the bolt file is already in memory (Bolt.ts); the
// filesystem and the database are written by ImportDir.ts.
//
// The Go layout: bucket `components` → one bucket per component → `byVersion` (version → JSON
// {Name,Version,File,Hash,Ctime}) and `byTime` (the same records by `RFC3339-seconds#version`);
// bucket `configs` → one bucket per configuration → `current` (the document agents read) and one
// key per saved state, `RFC3339-seconds#<5 hex of its hash>` → the document as it was; bucket
// `files` (blob sha256 → its users) is derivable and dropped.
import { Either, ParseResult, Schema } from "effect"
import { configHash } from "../../domain/ConfigHash.js"
import { ConfigurationDocument, DocumentLayer } from "../../domain/Document.js"
import type { BoltBucket, BoltDb } from "./Bolt.js"

export interface GoVersion {
  readonly component: string
  readonly version: string
  readonly hash: string
  readonly ctime: Date
}

export interface GoState {
  readonly time: Date
  readonly hash: string
  readonly layers: ReadonlyArray<GoVersion>
}

export interface GoConfiguration {
  readonly name: string
  /** Oldest first; the last one is the current state. */
  readonly states: ReadonlyArray<GoState>
}

export interface GoRegistry {
  /** Per component (byte order of names), oldest first. */
  readonly versions: ReadonlyArray<GoVersion>
  /** Byte order of names. */
  readonly configurations: ReadonlyArray<GoConfiguration>
  /** Top-level keys we do not know, reported rather than silently dropped. */
  readonly ignored: ReadonlyArray<string>
}

/** Thrown inside `readGoRegistry` for content that is valid bolt but not a registry we can take over. */
export class NotImportable extends Error {}

const refuse = (why: string): never => {
  throw new NotImportable(why)
}

const VersionRecord = Schema.parseJson(DocumentLayer)
const Document = Schema.parseJson(ConfigurationDocument)

const decode = <A, I>(schema: Schema.Schema<A, I>, bytes: Buffer, what: string): A =>
  Either.getOrElse(Schema.decodeUnknownEither(schema)(bytes.toString("utf8")), (e) =>
    refuse(`${what}: ${ParseResult.TreeFormatter.formatErrorSync(e).replace(/\s*\n\s*/g, "; ")}`)
  )

/** Bolt keys are bytes; ours are UTF-8 text. */
const text = (key: Buffer, what: string) => {
  const s = key.toString("utf8")
  if (!Buffer.from(s, "utf8").equals(key)) refuse(`${what} ${JSON.stringify(s)} is not valid UTF-8`)
  return s
}

const buckets = (b: BoltBucket, what: string) =>
  b.entries().map((e) => {
    const name = text(e.key, what)
    if (e._tag !== "Bucket") return refuse(`${what} ${JSON.stringify(name)} is a value, expected a bucket`)
    return { name, bucket: e.bucket }
  })

const readComponent = (name: string, bucket: BoltBucket): Array<GoVersion> => {
  const byVersion = bucket.bucket("byVersion") ?? refuse(`component "${name}" has no byVersion bucket`)
  const versions = byVersion.entries().map((e): GoVersion => {
    const key = text(e.key, `component "${name}": version`)
    if (e._tag !== "Value") return refuse(`component "${name}": version "${key}" is a bucket`)
    const r = decode(VersionRecord, e.value, `component "${name}" version "${key}"`)
    if (r.Name !== name || r.Version !== key) refuse(`component "${name}" version "${key}": its record names ${r.Name}:${r.Version}`)
    return { component: name, version: key, hash: r.Hash, ctime: r.Ctime }
  })
  // Oldest first in the Go registry's own order, its byTime keys (`RFC3339-seconds#version`): what its
  // showcomp listed and its bumpconf took as the newest (within one second: byte order of versions).
  const rank = new Map<string, number>()
  for (const e of bucket.bucket("byTime")?.entries() ?? []) {
    const k = e.key.toString("utf8")
    rank.set(k.slice(k.indexOf("#") + 1), rank.size)
  }
  const last = Number.MAX_SAFE_INTEGER
  return versions.sort(
    (a, b) =>
      (rank.get(a.version) ?? last) - (rank.get(b.version) ?? last) ||
      a.ctime.getTime() - b.ctime.getTime() ||
      Buffer.compare(Buffer.from(a.version), Buffer.from(b.version))
  )
}

const stateOf = (doc: ConfigurationDocument, name: string, key: string): GoState => {
  if (doc.Name !== name) refuse(`configuration "${name}": ${key} names configuration "${doc.Name}"`)
  const seen = new Set<string>()
  for (const l of doc.Layers) {
    if (seen.has(l.Name)) refuse(`configuration "${name}": ${key} has component "${l.Name}" twice`)
    seen.add(l.Name)
  }
  // Agents compare this hash with their own: it must stay exactly what the Go registry served.
  if (configHash(doc.Layers.map((l) => l.Hash)) !== doc.Hash) refuse(`configuration "${name}": ${key} has a hash that does not match its layers`)
  return {
    time: doc.Mtime,
    hash: doc.Hash,
    layers: doc.Layers.map((l) => ({ component: l.Name, version: l.Version, hash: l.Hash, ctime: l.Ctime }))
  }
}

const sameLayers = (a: GoState, b: GoState) =>
  a.layers.length === b.layers.length &&
  a.layers.every((l, i) => l.component === b.layers[i]!.component && l.version === b.layers[i]!.version && l.hash === b.layers[i]!.hash)

const readConfiguration = (name: string, bucket: BoltBucket, versions: Map<string, string>): GoConfiguration => {
  let current: GoState | undefined
  const saved: Array<{ key: string; state: GoState }> = []
  for (const e of bucket.entries()) {
    const key = text(e.key, `configuration "${name}": key`)
    if (e._tag !== "Value") refuse(`configuration "${name}": "${key}" is a bucket`)
    const state = stateOf(decode(Document, (e as { value: Buffer }).value, `configuration "${name}" ${key}`), name, key)
    if (key === "current") current = state
    else saved.push({ key, state })
  }
  if (current === undefined) return refuse(`configuration "${name}" has no current document`)
  for (const l of current.layers) {
    const hash = versions.get(`${l.component}\u0000${l.version}`)
    if (hash === undefined) refuse(`configuration "${name}": layer ${l.component}:${l.version} names a version the registry does not have`)
    if (hash !== l.hash) refuse(`configuration "${name}": layer ${l.component}:${l.version} has blob ${l.hash}, the version has ${hash}`)
  }
  // Keys sort by second only; the documents' Mtime orders states within one second.
  saved.sort((a, b) => a.state.time.getTime() - b.state.time.getTime() || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const states = saved.map((s) => s.state)
  const last = states.at(-1)
  if (last === undefined || last.hash !== current.hash || !sameLayers(last, current)) states.push(current)
  else states[states.length - 1] = current
  return { name, states }
}

/** The registry in `db`; throws BoltCorrupt (unreadable file) or NotImportable (unexpected content). */
export const readGoRegistry = (db: BoltDb): GoRegistry => {
  const ignored: Array<string> = []
  let components: BoltBucket | undefined
  let configs: BoltBucket | undefined
  for (const e of db.root.entries()) {
    const name = e.key.toString("utf8")
    if (name === "components" && e._tag === "Bucket") components = e.bucket
    else if (name === "configs" && e._tag === "Bucket") configs = e.bucket
    else if (name !== "files") ignored.push(name)
  }
  if (components === undefined && configs === undefined) refuse("no components or configs bucket: not a deploy-registry database")
  const versions = components === undefined ? [] : buckets(components, "component").flatMap((c) => readComponent(c.name, c.bucket))
  const byKey = new Map(versions.map((v) => [`${v.component}\u0000${v.version}`, v.hash]))
  const configurations = configs === undefined ? [] : buckets(configs, "configuration").map((c) => readConfiguration(c.name, c.bucket, byKey))
  return { versions, configurations, ignored }
}

