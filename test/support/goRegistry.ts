// Test only: a data directory as the Go deploy-registry leaves it (state.db in bolt, files/<sha256>,
// host_key), generated with many versions and states so that its bolt file needs branch pages,
// overflow pages and both inline and paged buckets.
import { createHash } from "node:crypto"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { configHash } from "../../src/domain/ConfigHash.js"
import { type BoltStats, type BoltTree, writeBolt } from "./boltWriter.js"

export const FIXTURE = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../../shared/fixtures/go-registry")

const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex")
/** Go's RFC3339Nano: nanoseconds, trailing zeros trimmed. */
const goTime = (ms: number, nanos: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, `.${String(nanos).padStart(9, "0")}`.replace(/0+$/, "") + "Z")
const goSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z")

interface Ver {
  component: string
  version: string
  hash: string
  ctime: string
}

export interface GeneratedRegistry {
  readonly dir: string
  readonly stats: BoltStats
  readonly stateDbSize: number
  readonly versions: ReadonlyArray<Ver>
  /** Per configuration: the current document's hash, the number of states, the documents oldest first. */
  readonly configurations: ReadonlyArray<{ name: string; hash: string; states: number; times: ReadonlyArray<string> }>
}

/**
 * Components `app` (150 versions) and `lib` (120), `c00`..`c39` (one each), `tiny` (one); configurations
 * `web` (150 states), `api` (100 states), `big` (40 layers: a document larger than a page; 2 states)
 * and `legacy` (only a current document, no saved state).
 */
export const generateGoRegistry = async (dir: string): Promise<GeneratedRegistry> => {
  await fs.mkdir(path.join(dir, "files"), { recursive: true })
  await fs.mkdir(path.join(dir, "uploads"))
  await fs.copyFile(path.join(FIXTURE, "data/host_key"), path.join(dir, "host_key"))
  let clock = Date.parse("2025-06-01T10:00:00Z")
  const tick = (ms: number) => (clock += ms)

  const versions: Array<Ver> = []
  const components: BoltTree = new Map()
  const addComponent = async (name: string, count: number) => {
    const byVersion: BoltTree = new Map()
    const byTime: BoltTree = new Map()
    for (let i = 1; i <= count; i++) {
      const version = `v${String(i).padStart(3, "0")}`
      const blob = `${name} ${version}\n`
      const hash = sha(blob)
      await fs.writeFile(path.join(dir, "files", hash), blob)
      const ms = tick(1000 + (i % 7))
      const v = { component: name, version, hash, ctime: goTime(ms, (ms % 1000) * 1e6 + 123) }
      versions.push(v)
      const record = JSON.stringify({ Name: name, Version: version, File: `files/${hash}`, Hash: hash, Ctime: v.ctime })
      byVersion.set(version, record)
      byTime.set(`${goSeconds(ms)}#${version}`, record)
    }
    components.set(name, new Map<string, BoltTree>([["byVersion", byVersion], ["byTime", byTime]]))
  }
  await addComponent("app", 150)
  await addComponent("lib", 120)
  for (let i = 0; i < 40; i++) await addComponent(`c${String(i).padStart(2, "0")}`, 1)
  await addComponent("tiny", 1)

  const find = (c: string, v: string) => versions.find((x) => x.component === c && x.version === v)!
  const doc = (name: string, layers: ReadonlyArray<Ver>, mtime: string) =>
    JSON.stringify(
      {
        Name: name,
        Mtime: mtime,
        Hash: configHash(layers.map((l) => l.hash)),
        Layers: layers.map((l) => ({ Name: l.component, Version: l.version, File: `files/${l.hash}`, Hash: l.hash, Ctime: l.ctime }))
      },
      null,
      "\t"
    )

  const configs: BoltTree = new Map()
  const configurations: Array<GeneratedRegistry["configurations"][number]> = []
  const addConfig = (name: string, states: ReadonlyArray<ReadonlyArray<Ver>>, saved = true) => {
    const bucket: BoltTree = new Map()
    const times: Array<string> = []
    let current = ""
    for (const layers of states) {
      // 300 ms apart: several states share a second, and their keys then sort by hash, not by time.
      const ms = tick(300)
      const mtime = goTime(ms, (ms % 1000) * 1e6 + 7)
      current = doc(name, layers, mtime)
      times.push(mtime)
      if (saved) bucket.set(`${goSeconds(ms)}#${configHash(layers.map((l) => l.hash)).slice(0, 5)}`, current)
    }
    bucket.set("current", current)
    configs.set(name, bucket)
    configurations.push({ name, hash: JSON.parse(current).Hash, states: states.length, times })
  }
  const v = (n: number) => `v${String(n).padStart(3, "0")}`
  addConfig("web", Array.from({ length: 150 }, (_, i) => [find("app", v(i + 1)), find("tiny", "v001")]))
  addConfig("api", Array.from({ length: 100 }, (_, i) => [find("lib", v(120 - i)), find("app", v(150))]))
  const wide = Array.from({ length: 40 }, (_, i) => find(`c${String(i).padStart(2, "0")}`, "v001"))
  addConfig("big", [wide, [...wide].reverse()])
  addConfig("legacy", [[find("lib", "v001")]], false)

  const files: BoltTree = new Map(versions.map((x) => [x.hash, JSON.stringify([{ Component: x.component, Version: x.version }])]))
  const { bytes, stats } = writeBolt(new Map<string, BoltTree>([["components", components], ["configs", configs], ["files", files]]))
  await fs.writeFile(path.join(dir, "state.db"), bytes)
  return { dir, stats, stateDbSize: bytes.length, versions, configurations }
}
