// Builds `docker save` archives in memory, the way docker writes them, without a docker engine:
// layer tars (with whiteouts, hard links, long names), the classic layout and the OCI layout.
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import * as zlib from "node:zlib"
import * as tar from "tar"

const run = promisify(execFile)

export interface Ent {
  path: string
  type?: "File" | "Directory" | "SymbolicLink" | "Link"
  data?: string | Buffer
  linkpath?: string
  mode?: number
  uid?: number
  gid?: number
  mtime?: Date
}

export const file = (p: string, data: string | Buffer, extra: Partial<Ent> = {}): Ent => ({ path: p, type: "File", data, ...extra })
export const dir = (p: string, extra: Partial<Ent> = {}): Ent => ({ path: p.endsWith("/") ? p : `${p}/`, type: "Directory", ...extra })
export const symlink = (p: string, target: string): Ent => ({ path: p, type: "SymbolicLink", linkpath: target })
export const hardlink = (p: string, target: string): Ent => ({ path: p, type: "Link", linkpath: target })
export const whiteout = (p: string): Ent => {
  const i = p.lastIndexOf("/")
  return file(i < 0 ? `.wh.${p}` : `${p.slice(0, i)}/.wh.${p.slice(i + 1)}`, "")
}
export const opaque = (d: string): Ent => file(`${d}/.wh..wh..opq`, "")

const T0 = new Date("2024-01-02T03:04:05Z")

/** A tar archive of `entries` (pax headers for long names), as Go's archive/tar would write it. */
export const tarOf = (entries: ReadonlyArray<Ent>): Buffer => {
  const parts: Array<Buffer> = []
  for (const e of entries) {
    const data = Buffer.from(e.data ?? "")
    const type = e.type ?? "File"
    const h = new tar.Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      size: type === "File" ? data.length : 0,
      mtime: e.mtime ?? T0,
      linkpath: e.linkpath ?? "",
      uname: "",
      gname: ""
    })
    h.encode()
    if (h.needPax) parts.push(new tar.Pax({ path: e.path, linkpath: e.linkpath }).encode())
    parts.push(h.block!)
    if (type === "File" && data.length > 0) {
      parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512))
    }
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex")

interface OuterFile {
  path: string
  data?: Buffer
  linkpath?: string
}

/** The outer archive: binary files and symlinks. */
const outer = (files: ReadonlyArray<OuterFile>): Buffer => {
  const parts: Array<Buffer> = []
  for (const f of files) {
    const isLink = f.linkpath !== undefined
    const data = f.data ?? Buffer.alloc(0)
    const h = new tar.Header({ path: f.path, type: isLink ? "SymbolicLink" : "File", mode: 0o644, size: isLink ? 0 : data.length, mtime: T0, linkpath: f.linkpath ?? "" })
    h.encode()
    parts.push(h.block!)
    if (!isLink && data.length > 0) parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

export interface SaveOptions {
  /** RepoTags[0] (classic) / io.containerd.image.name (OCI); omitted when undefined. */
  ref?: string | undefined
  layers: ReadonlyArray<Buffer>
  /** gzip these layers (by index). */
  gzip?: ReadonlyArray<number>
}

const layerBlob = (o: SaveOptions, i: number) => (o.gzip?.includes(i) ? zlib.gzipSync(o.layers[i]!) : o.layers[i]!)
const configOf = (o: SaveOptions) =>
  Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: o.layers.map((l) => `sha256:${sha(l)}`) } }))

/** Classic `docker save` (docker < 25): `<id>/layer.tar`, `<config>.json`, manifest.json last. */
export const classicSave = (o: SaveOptions): Buffer => {
  const config = configOf(o)
  const files: Array<OuterFile> = []
  const names: Array<string> = []
  o.layers.forEach((_, i) => {
    const blob = layerBlob(o, i)
    const id = sha(Buffer.concat([blob, Buffer.from(String(i))]))
    names.push(`${id}/layer.tar`)
    files.push({ path: `${id}/VERSION`, data: Buffer.from("1.0") }, { path: `${id}/layer.tar`, data: blob })
  })
  files.push({ path: `${sha(config)}.json`, data: config })
  const manifest = [{ Config: `${sha(config)}.json`, RepoTags: o.ref === undefined ? null : [o.ref], Layers: names }]
  files.push({ path: "manifest.json", data: Buffer.from(JSON.stringify(manifest)) })
  return outer(files)
}

/** OCI layout (docker 25+ without manifest.json, skopeo, buildx type=oci): blobs/sha256/… and index.json. */
export const ociSave = (o: SaveOptions & { nested?: boolean; extraManifests?: number }): Buffer => {
  const config = configOf(o)
  const files: Array<OuterFile> = [{ path: "oci-layout", data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') }]
  const blobs = new Map<string, Buffer>()
  const put = (b: Buffer) => {
    blobs.set(sha(b), b)
    return `sha256:${sha(b)}`
  }
  const layerDescs = o.layers.map((_, i) => {
    const b = layerBlob(o, i)
    return {
      mediaType: o.gzip?.includes(i) ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar",
      digest: put(b),
      size: b.length
    }
  })
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: put(config), size: config.length },
    layers: layerDescs
  }))
  const annotations = o.ref === undefined ? undefined : { "io.containerd.image.name": o.ref, "org.opencontainers.image.ref.name": o.ref.split(":").pop() }
  const manifests = [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: put(manifest), size: manifest.length,
    platform: { os: "linux", architecture: "amd64" } }]
  for (let k = 0; k < (o.extraManifests ?? 0); k++) {
    const other = Buffer.from(JSON.stringify({ schemaVersion: 2, config: JSON.parse(manifest.toString()).config, layers: [], n: k }))
    manifests.push({ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: put(other), size: other.length, platform: { os: "linux", architecture: `arm${k}` } })
  }
  let top: Array<Record<string, unknown>>
  if (o.nested) {
    const idx = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }))
    top = [{ mediaType: "application/vnd.oci.image.index.v1+json", digest: put(idx), size: idx.length, annotations }]
  } else {
    top = manifests.map((m) => ({ ...m, annotations }))
  }
  for (const [h, b] of blobs) files.push({ path: `blobs/sha256/${h}`, data: b })
  files.push({ path: "index.json", data: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: top })) })
  return outer(files)
}

export interface TreeNode {
  type: "file" | "dir" | "symlink"
  content?: string
  target?: string
  mode?: number
}

/** Extracts every .tar.gz in order into a fresh directory with GNU tar, as the agent would. */
export const extractInOrder = async (archives: ReadonlyArray<string>, into: string) => {
  await fs.mkdir(into, { recursive: true })
  for (const a of archives) await run("tar", ["-xzf", a, "-C", into])
}

/** The tree below `root`: path → node (modes only when asked). */
export const readTree = async (root: string, withModes = false): Promise<Record<string, TreeNode>> => {
  const out: Record<string, TreeNode> = {}
  const walk = async (rel: string) => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const p = rel === "" ? name : `${rel}/${name}`
      const st = await fs.lstat(path.join(root, p))
      const mode = withModes ? { mode: st.mode & 0o7777 } : {}
      if (st.isSymbolicLink()) out[p] = { type: "symlink", target: await fs.readlink(path.join(root, p)) }
      else if (st.isDirectory()) {
        out[p] = { type: "dir", ...mode }
        await walk(p)
      } else out[p] = { type: "file", content: await fs.readFile(path.join(root, p), "utf8"), ...mode }
    }
  }
  await walk("")
  return out
}

/** Lists the entry names of a .tar.gz with GNU tar. */
export const listArchive = async (archive: string): Promise<Array<string>> =>
  (await run("tar", ["-tzf", archive])).stdout.split("\n").filter((l) => l !== "")
