// What each operator key recently uploaded or made, by the path its client used, so that the STAT a
// client sends after writing (paramiko's confirming stat, rclone's SetModTime) and the directories of a
// folder upload are answered, although the registry ignores remote names.
import * as posix from "node:path/posix"

/** A few hundred names per key, oldest forgotten first; per registry (per `owner`, its Uploads), since clients check with another connection. */
const RECENT_PER_KEY = 256
const recentByKey = new WeakMap<object, Map<string, Map<string, "dir" | { size: number; mtime: Date }>>>()
export const recentPaths = (owner: object, key: string) => {
  const byKey = recentByKey.get(owner) ?? new Map<string, Map<string, "dir" | { size: number; mtime: Date }>>()
  recentByKey.set(owner, byKey)
  const mine = () => {
    let m = byKey.get(key)
    if (m === undefined) byKey.set(key, (m = new Map()))
    return m
  }
  const put = (p: string, v: "dir" | { size: number; mtime: Date }) => {
    const m = mine()
    m.delete(p)
    m.set(p, v)
    for (const old of m.keys()) {
      if (m.size <= RECENT_PER_KEY) break
      m.delete(old)
    }
  }
  const parents = (p: string) => {
    for (let d = posix.dirname(p); d !== "/"; d = posix.dirname(d)) put(d, "dir")
  }
  return {
    get: (p: string) => byKey.get(key)?.get(p),
    dir: (p: string) => {
      parents(p)
      if (p !== "/") put(p, "dir")
    },
    file: (p: string, size: number) => {
      parents(p)
      put(p, { size, mtime: new Date() })
    }
  }
}

