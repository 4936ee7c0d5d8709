// The registry's metadata as the operator sees it (through -json commands), flattened into facts:
// "component\0version" → blob hash, and configuration name → "c:v c:v …" (layer order kept).
import type { Session } from "./client.js"

export interface RegistryState {
  readonly versions: Map<string, string>
  readonly configs: Map<string, string>
}

export const versionKey = (component: string, version: string) => `${component}\u0000${version}`
export const splitKey = (key: string): [string, string] => key.split("\u0000") as [string, string]

const json = async <A>(s: Session, cmd: string): Promise<A> => {
  const r = await s.exec(cmd)
  if (r.code !== 0) throw new Error(`${cmd} exited ${r.code}: ${r.stdout.toString()}`)
  return JSON.parse(r.stdout.toString()) as A
}

export const readState = async (s: Session): Promise<RegistryState> => {
  const versions = new Map<string, string>()
  const configs = new Map<string, string>()
  for (const c of await json<Array<string>>(s, "components -json")) {
    const comp = await json<{ Versions: Array<{ Version: string; Hash: string }> }>(s, `showcomp -json -name ${c}`)
    for (const v of comp.Versions) versions.set(versionKey(c, v.Version), v.Hash)
  }
  for (const p of await json<Array<string>>(s, "configurations -json")) {
    configs.set(p, await configLayers(s, p))
  }
  return { versions, configs }
}

export interface Document {
  readonly Name: string
  readonly Hash: string
  readonly Layers: ReadonlyArray<{ Name: string; Version: string; Hash: string }>
}

export const showconf = (s: Session, name: string) => json<Document>(s, `showconf -json -name ${name}`)

export const configLayers = async (s: Session, name: string): Promise<string> =>
  (await showconf(s, name)).Layers.map((l) => `${l.Name}:${l.Version}`).join(" ")

/** Allowed values of one fact after a round: a definite value, or any of several when an outcome is unknown. */
export type Expect = ReadonlyArray<string | null>
