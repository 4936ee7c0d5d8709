// Reads `docker save` output (a tar stream, possibly gzipped as a whole) into a scratch directory
// and finds exactly one image in it: the classic layout (manifest.json, `<id>/layer.tar`; docker 25+
// points its entries into blobs/) or the OCI layout (index.json, blobs/sha256/…). Every file of the
// stream is spooled to disk as it arrives — the order of entries is not fixed (manifest.json comes
// last) — so memory stays flat however large the image. Each layer is then made an uncompressed
// tar on disk (gzip layers are inflated) and hashed: the sha256 of the uncompressed tar is the
// layer's diff-id, checked against the image config when it lists them.
import { Effect, Either, ParseResult, Schema } from "effect"
import { createHash } from "node:crypto"
import { createReadStream, createWriteStream } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Readable } from "node:stream"
import { Transform } from "node:stream"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import * as tar from "tar"
import { ArchiveError, LocalIoError } from "../domain/DockerErrors.js"
import { normalizePath } from "./TarFile.js"

export interface ImageLayer {
  /** An uncompressed tar file in the scratch directory. */
  readonly tarPath: string
  /** sha256 (hex) of that tar: docker's diff-id. */
  readonly diffId: string
}

export interface DockerImage {
  /** The image reference as saved (`app:1.2`), if the archive names one. */
  readonly reference: string | undefined
  readonly layers: ReadonlyArray<ImageLayer>
}

/** Spooled files of the outer archive, by normalized path, and its links (path → target path). */
interface Spool {
  readonly files: Map<string, string>
  readonly links: Map<string, string>
}

const MAX_JSON = 16 << 20

const isErrno = (e: unknown) => typeof (e as NodeJS.ErrnoException)?.code === "string" && (e as NodeJS.ErrnoException).syscall !== undefined

/** A local file operation failed (disk full, say) or the data was bad: which one decides the error. */
const ioFailure = (e: unknown, what: string): ArchiveError | LocalIoError =>
  isErrno(e)
    ? new LocalIoError({ message: `${what}: cannot use the temp directory: ${(e as Error).message}`, cause: e })
    : fail(`${what}: ${(e as Error).message}`)

const fail = (message: string) => new ArchiveError({ message })

/** Writes every regular file of the stream to `dir/o<N>`; records symbolic and hard links. */
const spool = (input: Readable, dir: string, signal: AbortSignal): Promise<Spool> =>
  new Promise((resolve, reject) => {
    const files = new Map<string, string>()
    const links = new Map<string, string>()
    const writes: Array<Promise<void>> = []
    let n = 0
    let failed = false
    /** What the parser reads from: the input, or its gunzip. */
    let plain: Readable = input
    const parser = new tar.Parser({ strict: true })
    const onError = (e: unknown) => {
      if (failed) return
      failed = true
      input.destroy()
      if (plain !== input) plain.destroy()
      const bad = (e as { tarCode?: string }).tarCode === "TAR_BAD_ARCHIVE" && files.size === 0
      reject(
        e instanceof ArchiveError || e instanceof LocalIoError ? e
        : bad ? fail("the input is empty or not a tar archive; pipe `docker save IMAGE` into deploy-from-docker")
        : fail(`not a docker save archive: ${(e as Error).message}`)
      )
    }
    signal.addEventListener("abort", () => onError(fail("interrupted")), { once: true })
    parser.on("entry", (entry: tar.ReadEntry) => {
      const p = normalizePath(entry.path)
      if (p === undefined || p === "") return entry.resume()
      if (entry.type === "SymbolicLink" && entry.linkpath) {
        const target = normalizePath(path.posix.join(path.posix.dirname(p), entry.linkpath))
        if (target !== undefined) links.set(p, target)
        return entry.resume()
      }
      if (entry.type === "Link" && entry.linkpath) {
        const target = normalizePath(entry.linkpath)
        if (target !== undefined) links.set(p, target)
        return entry.resume()
      }
      if (entry.type !== "File" && entry.type !== "OldFile" && entry.type !== "ContiguousFile") return entry.resume()
      const file = path.join(dir, `o${n++}`)
      files.set(p, file)
      links.delete(p)
      const out = createWriteStream(file)
      // A failed write (disk full) fails the whole read at once: the parser would wait for it forever.
      out.once("error", (e) => onError(new LocalIoError({ message: `cannot write to the temp directory: ${e.message}`, cause: e })))
      writes.push(new Promise<void>((res) => out.once("finish", res)))
      entry.pipe(out)
    })
    parser.on("error", onError)
    input.once("error", onError)
    // node-tar sniffs its input and inflates gzip/zstd itself — zstd by throwing inside a stream
    // handler (Node 20 has none), which would kill the process. So it only ever gets a plain tar:
    // a gzip'd stream is inflated here, and compressed data after that is refused before it sees it.
    let first = true
    const endParser = () => {
      try {
        parser.end()
      } catch (e) {
        onError(e)
      }
    }
    const feed = (chunk: Buffer) => {
      if (failed) return
      if (first) {
        first = false
        const zstd = chunk.length >= 4 && chunk.readUInt32BE(0) === 0x28b52ffd
        if (zstd && plain === input) return onError(fail("the input is zstd-compressed; pipe plain `docker save` output (or gzip it)"))
        if (zstd || (chunk[0] === 0x1f && chunk[1] === 0x8b)) return onError(fail("not a docker save archive: compressed twice"))
      }
      try {
        if (!parser.write(chunk)) {
          plain.pause()
          parser.once("drain", () => plain.resume())
        }
      } catch (e) {
        onError(e)
      }
    }
    parser.on("end", () => {
      Promise.all(writes).then(
        () => {
          if (failed) return
          if (files.size === 0) onError(fail("the input is empty or holds no files; pipe `docker save IMAGE` into it"))
          else resolve({ files, links })
        },
        onError
      )
    })
    let started = false
    input.once("end", () => {
      if (!started) endParser() // empty input: the parser says what it thinks of it
    })
    input.once("data", (chunk: Buffer) => {
      started = true
      if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
        const gunzip = zlib.createGunzip()
        gunzip.once("error", (e) => onError(fail(`not a docker save archive: bad gzip data: ${e.message}`)))
        plain = gunzip
        gunzip.on("data", feed)
        gunzip.once("end", endParser)
        gunzip.write(chunk)
        input.pipe(gunzip)
        return
      }
      input.on("data", feed)
      input.once("end", endParser)
      feed(chunk)
    })
  })

/** The spooled file for a path named inside the archive, following links (a few hops). */
const locate = (s: Spool, name: string, what: string): Either.Either<string, ArchiveError> => {
  let p = normalizePath(name)
  for (let hops = 0; p !== undefined && hops < 16; hops++) {
    const file = s.files.get(p)
    if (file !== undefined) return Either.right(file)
    p = s.links.get(p)
  }
  return Either.left(fail(`the archive has no file ${name} (${what})`))
}

const readJson = <A, I>(file: string, schema: Schema.Schema<A, I>, what: string): Effect.Effect<A, ArchiveError> =>
  Effect.gen(function* () {
    const text = yield* Effect.tryPromise({
      try: async () => {
        const st = await fs.stat(file)
        if (st.size > MAX_JSON) throw new Error("too large")
        return fs.readFile(file, "utf8")
      },
      catch: (e) => fail(`cannot read ${what}: ${(e as Error).message}`)
    })
    return yield* Schema.decodeUnknown(Schema.parseJson(schema))(text).pipe(
      Effect.mapError((e) => fail(`${what} is not valid: ${ParseResult.TreeFormatter.formatErrorSync(e).split("\n").slice(-1)[0]?.trim()}`))
    )
  })

const ClassicManifest = Schema.Array(
  Schema.Struct({
    Config: Schema.optional(Schema.String),
    RepoTags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    Layers: Schema.Array(Schema.String)
  })
)

const Descriptor = Schema.Struct({
  mediaType: Schema.optional(Schema.String),
  digest: Schema.String,
  annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  platform: Schema.optional(Schema.Struct({ os: Schema.optional(Schema.String), architecture: Schema.optional(Schema.String) }))
})
type Descriptor = typeof Descriptor.Type

const OciIndex = Schema.Struct({ manifests: Schema.Array(Descriptor) })
/** An image manifest or a nested index: whichever fields are present say which. */
const OciNode = Schema.Struct({
  manifests: Schema.optional(Schema.Array(Descriptor)),
  config: Schema.optional(Descriptor),
  layers: Schema.optional(Schema.Array(Descriptor))
})
const ImageConfig = Schema.Struct({
  rootfs: Schema.optional(Schema.Struct({ diff_ids: Schema.optional(Schema.Array(Schema.String)) }))
})

const blobPath = (digest: string): Either.Either<string, ArchiveError> => {
  const m = /^([a-z0-9]+):([a-f0-9]{32,128})$/.exec(digest)
  return m ? Either.right(`blobs/${m[1]}/${m[2]}`) : Either.left(fail(`bad digest ${JSON.stringify(digest)} in index.json`))
}

interface Found {
  readonly reference: string | undefined
  readonly config: string | undefined
  readonly layers: ReadonlyArray<string>
}

const nameAnnotation = (d: Descriptor): string | undefined =>
  d.annotations?.["io.containerd.image.name"] ?? d.annotations?.["org.opencontainers.image.ref.name"]

const platformOf = (d: Descriptor) => `${d.platform?.os ?? "?"}/${d.platform?.architecture ?? "?"}`

const fromClassic = (manifest: string) =>
  Effect.gen(function* () {
    const images = yield* readJson(manifest, ClassicManifest, "manifest.json")
    if (images.length !== 1) {
      return yield* Effect.fail(
        fail(`the archive holds ${images.length} images; deploy-from-docker takes exactly one (docker save IMAGE)`)
      )
    }
    const image = images[0]!
    return { reference: image.RepoTags?.[0], config: image.Config, layers: image.Layers } satisfies Found
  })

const fromOci = (s: Spool, index: string) =>
  Effect.gen(function* () {
    const top = yield* readJson(index, OciIndex, "index.json")
    const leaves: Array<{ d: Descriptor; node: typeof OciNode.Type; name: string | undefined }> = []
    const walk = (ds: ReadonlyArray<Descriptor>, name: string | undefined, depth: number): Effect.Effect<void, ArchiveError> =>
      Effect.forEach(ds, (d) =>
        Effect.gen(function* () {
          // buildx adds provenance/SBOM manifests beside the image: they are not images.
          if (d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") return
          if (depth > 4) return yield* Effect.fail(fail("index.json nests indexes too deeply"))
          const file = yield* locate(s, yield* blobPath(d.digest), `manifest ${d.digest}`)
          const node = yield* readJson(file, OciNode, `manifest ${d.digest}`)
          const n = nameAnnotation(d) ?? name
          if (node.manifests !== undefined) yield* walk(node.manifests, n, depth + 1)
          else leaves.push({ d, node, name: n })
        }), { discard: true })
    yield* walk(top.manifests, undefined, 0)
    if (leaves.length !== 1) {
      const which = leaves.length === 0 ? "" : ` (${leaves.map((l) => platformOf(l.d)).join(", ")})`
      return yield* Effect.fail(
        fail(`the archive holds ${leaves.length} image manifests${which}; deploy-from-docker takes exactly one (docker save --platform …)`)
      )
    }
    const leaf = leaves[0]!
    const layers: Array<string> = []
    for (const l of leaf.node.layers ?? []) layers.push(yield* blobPath(l.digest))
    const config = leaf.node.config ? yield* blobPath(leaf.node.config.digest) : undefined
    return { reference: leaf.name, config, layers } satisfies Found
  })

const ZSTD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

const sniff = async (file: string): Promise<Buffer> => {
  const fh = await fs.open(file, "r")
  try {
    const buf = Buffer.alloc(4)
    const { bytesRead } = await fh.read(buf, 0, 4, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** Makes layer `n` (1-based) an uncompressed tar on disk and hashes it. */
const prepareLayer = (dir: string, source: string, n: number) =>
  Effect.tryPromise({
    try: async (signal): Promise<ImageLayer> => {
      const magic = await sniff(source)
      if (magic.length === 4 && magic.equals(ZSTD)) throw fail(`layer ${n} is zstd-compressed, which is not supported; save it uncompressed or gzipped`)
      const hash = createHash("sha256")
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk)
          cb(null, chunk)
        }
      })
      if (magic[0] === 0x1f && magic[1] === 0x8b) {
        const tarPath = path.join(dir, `layer${n}.tar`)
        await pipeline(createReadStream(source), zlib.createGunzip(), hasher, createWriteStream(tarPath), { signal }).catch((e) => {
          throw signal.aborted || isErrno(e) ? e : fail(`layer ${n}: bad gzip data: ${(e as Error).message}`)
        })
        return { tarPath, diffId: hash.digest("hex") }
      }
      await pipeline(createReadStream(source), hasher, async function* (chunks) {
        for await (const _ of chunks) void _
      }, { signal })
      return { tarPath: source, diffId: hash.digest("hex") }
    },
    catch: (e) => (e instanceof ArchiveError ? e : ioFailure(e, `layer ${n}`))
  })

/** Reads the whole `docker save` stream from `input`, spooling into `dir` (which the caller removes). */
export const readArchive = (input: Readable, dir: string): Effect.Effect<DockerImage, ArchiveError | LocalIoError> =>
  Effect.gen(function* () {
    const s = yield* Effect.tryPromise({
      try: (signal) => spool(input, dir, signal),
      catch: (e) => (e instanceof ArchiveError || e instanceof LocalIoError ? e : ioFailure(e, "the archive"))
    })
    const manifest = Either.getOrUndefined(locate(s, "manifest.json", ""))
    const index = Either.getOrUndefined(locate(s, "index.json", ""))
    // docker 25+ writes both; manifest.json is simpler and carries RepoTags.
    const found: Found = manifest !== undefined
      ? yield* fromClassic(manifest)
      : index !== undefined
        ? yield* fromOci(s, index)
        : yield* Effect.fail(fail("neither manifest.json nor index.json found: not a docker save archive"))
    if (found.layers.length === 0) return yield* Effect.fail(fail("the image has no layers"))
    const sources: Array<string> = []
    for (const [i, name] of found.layers.entries()) sources.push(yield* locate(s, name, `layer ${i + 1}`))
    const layers: Array<ImageLayer> = []
    for (const [i, source] of sources.entries()) {
      const layer = yield* prepareLayer(dir, source, i + 1)
      layers.push(layer)
      // An inflated layer's compressed spool is not needed again unless a later layer shares it: free the disk.
      if (layer.tarPath !== source && !sources.slice(i + 1).includes(source)) yield* Effect.promise(() => fs.rm(source, { force: true }))
    }
    if (found.config !== undefined) {
      const configFile = yield* locate(s, found.config, "image config")
      const config = yield* readJson(configFile, ImageConfig, "the image config")
      const ids = config.rootfs?.diff_ids
      if (ids !== undefined && ids.length === layers.length) {
        for (const [i, l] of layers.entries()) {
          if (ids[i] !== `sha256:${l.diffId}`) {
            return yield* Effect.fail(fail(`layer ${i + 1} does not match the image config (diff_id ${ids[i]}, content sha256:${l.diffId}): corrupt archive`))
          }
        }
      }
    }
    return { reference: found.reference, layers }
  })

/**
 * The configuration name for an image reference: docker's implied `docker.io/library/` is dropped
 * (so both layouts name an image alike), then `:` and `/` become `.`.
 */
export const imageName = (reference: string): string =>
  reference.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "").replace(/[:/]/g, ".")
