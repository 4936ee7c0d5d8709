// The agent's view of the registry: SSH as `deploy-agent`, host key pinned by fingerprint,
// read-only SFTP. One session (connection + SFTP channel) per cycle, closed with its scope.
import { Context, Effect, Layer, type Scope, Stream } from "effect"
import type { Client, SFTPWrapper } from "ssh2"
import { RegistryError } from "../domain/AgentErrors.js"
import { configHash } from "../domain/ConfigHash.js"
import { blobFile, type ConfigurationDocument, decodeDocument } from "../domain/Document.js"
import { DocumentError } from "../domain/Errors.js"
import type { Sha256 } from "../domain/Names.js"
import { connect } from "../ssh/Connection.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { AgentConfig } from "./AgentConfig.js"

export interface RegistrySession {
  /** `/configs/<name>.json`, decoded and checked (name and hash agree with the layers). */
  readonly document: (name: string) => Effect.Effect<ConfigurationDocument, RegistryError | DocumentError>
  /** `/files/<hash>` as a byte stream (parallel reads, delivered in order). */
  readonly download: (hash: Sha256) => Stream.Stream<Uint8Array, RegistryError>
}

export class RegistryClient extends Context.Tag("agent/RegistryClient")<
  RegistryClient,
  { readonly connect: Effect.Effect<RegistrySession, RegistryError, Scope.Scope> }
>() {}

/** Checks a decoded document against what we asked for; a registry bug or tampering shows here. */
export const checkDocument = (name: string, doc: ConfigurationDocument): Effect.Effect<ConfigurationDocument, DocumentError> => {
  if (doc.Name !== name) return Effect.fail(new DocumentError({ message: `bad configuration document: asked for "${name}", got "${doc.Name}"` }))
  const expected = configHash(doc.Layers.map((l) => l.Hash))
  if (doc.Hash !== expected)
    return Effect.fail(new DocumentError({ message: `bad configuration document: Hash ${doc.Hash} does not match its layers (${expected})` }))
  const seen = new Set<string>()
  for (const l of doc.Layers) {
    if (seen.has(l.Name)) return Effect.fail(new DocumentError({ message: `bad configuration document: component "${l.Name}" appears twice` }))
    seen.add(l.Name)
  }
  return Effect.succeed(doc)
}

const sftpError = (what: string, err: unknown) =>
  new RegistryError({ message: `${what}: ${err instanceof Error ? err.message : String(err)}` })

const openSftp = (client: Client) =>
  Effect.acquireRelease(
    Effect.async<SFTPWrapper, RegistryError>((resume) => {
      client.sftp((err, sftp) => resume(err ? Effect.fail(sftpError("cannot open SFTP session", err)) : Effect.succeed(sftp)))
    }),
    (sftp) => Effect.sync(() => sftp.end())
  )

const isNoSuchFile = (err: unknown) => (err as { code?: unknown } | undefined)?.code === 2

/**
 * Whether the session can still answer. ssh2 silently drops a request written to a channel that is no
 * longer open, after it has already failed the pending ones (SFTP.js tryWritePayload/cleanupRequests),
 * so the callback of a request issued after the close never runs: every request goes through `request`.
 */
interface Liveness {
  closed: boolean
  readonly waiters: Set<(err: Error) => void>
}
const liveness = new WeakMap<SFTPWrapper, Liveness>()
const connectionClosed = () => new Error("connection closed")

/** Starts watching `sftp` (and its connection) for the end; idempotent. */
export const watchClose = (sftp: SFTPWrapper, client?: Client): Liveness => {
  const known = liveness.get(sftp)
  if (known !== undefined) return known
  const l: Liveness = { closed: false, waiters: new Set() }
  const onClose = () => {
    if (l.closed) return
    l.closed = true
    for (const f of [...l.waiters]) f(connectionClosed())
    l.waiters.clear()
  }
  // 'end': the server sent EOF/CLOSE on the channel, so no reply can come any more.
  sftp.once("end", onClose)
  sftp.once("close", onClose)
  client?.once("close", onClose)
  liveness.set(sftp, l)
  return l
}

const isOpen = (sftp: SFTPWrapper) =>
  (sftp as unknown as { outgoing?: { state?: string } }).outgoing?.state === "open" &&
  (sftp as unknown as { readable?: boolean }).readable !== false

/** One SFTP request: fails at once on a closed session, and when the session closes while it waits. */
export const request = <A>(sftp: SFTPWrapper, f: (cb: (err: Error | undefined | null, a: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => {
    const l = watchClose(sftp)
    if (l.closed || !isOpen(sftp)) return reject(connectionClosed())
    let settled = false
    const settle = (err: Error | undefined | null, a?: A) => {
      if (settled) return
      settled = true
      l.waiters.delete(settle)
      if (err) reject(err)
      else resolve(a as A)
    }
    l.waiters.add(settle)
    try {
      f(settle)
    } catch (e) {
      settle(e instanceof Error ? e : new Error(String(e)))
    }
  })
const p = <A>(sftp: SFTPWrapper, f: (cb: (err: Error | undefined | null, a: A) => void) => void): Promise<A> => request(sftp, f)

/** Reads exactly `len` bytes at `off` (a server may answer short); fails if the file ends early. */
const readAt = async (sftp: SFTPWrapper, handle: Buffer, off: number, len: number): Promise<Buffer> => {
  const buf = Buffer.allocUnsafe(len)
  let got = 0
  while (got < len) {
    const n = await request<number>(sftp, (cb) => sftp.read(handle, buf, got, len - got, off + got, (err, bytesRead) => cb(err, bytesRead)))
    if (n === 0) throw new Error(`file ended at ${off + got}, expected more bytes`)
    got += n
  }
  return buf
}

/**
 * Streams a remote file with a window of concurrent reads (~8 MiB in flight, SSH2.md: large parallel
 * reads), yielding in file order every read that has already arrived, as one batch: the Stream and
 * the cache then do their per-element work once per batch rather than once per 256 KiB.
 */
async function* parallelRead(sftp: SFTPWrapper, path: string): AsyncGenerator<ReadonlyArray<Buffer>> {
  const handle = await p<Buffer>(sftp, (cb) => sftp.open(path, "r", cb))
  const pending: Array<{ readonly req: Promise<Buffer>; done: boolean }> = []
  try {
    const { size } = await p<{ size: number }>(sftp, (cb) => sftp.fstat(handle, cb))
    // ssh2 raises its read size when the server advertises limits@openssh.com; follow it.
    const maxRead = (sftp as unknown as { _maxReadLen?: number })._maxReadLen ?? 32 * 1024
    const chunk = Math.max(16 * 1024, Math.min(256 * 1024, maxRead))
    const window = Math.max(4, Math.min(64, Math.floor((8 * 1024 * 1024) / chunk)))
    let next = 0
    const issue = () => {
      const len = Math.min(chunk, size - next)
      const entry = { req: readAt(sftp, handle, next, len), done: false }
      entry.req.then(() => (entry.done = true), () => {}) // awaited later; not unhandled if we stop early
      pending.push(entry)
      next += len
    }
    while (next < size && pending.length < window) issue()
    while (pending.length > 0) {
      const batch = [await pending.shift()!.req]
      while (pending.length > 0 && pending[0]!.done) batch.push(await pending.shift()!.req)
      while (next < size && pending.length < window) issue()
      yield batch
    }
  } finally {
    // Not awaited: a stalled server must not hold up the cycle's shutdown; ending the session fails any pending read.
    request(sftp, (cb) => sftp.close(handle, (err) => cb(err, undefined))).catch(() => {})
  }
}

/** An iterable whose return() does not wait for a read in flight (the session's close ends that read). */
const detachedReturn = <A>(make: () => AsyncGenerator<A>): AsyncIterable<A> => ({
  [Symbol.asyncIterator]: () => {
    const it = make()
    return {
      next: () => it.next(),
      return: () => {
        it.return(undefined).catch(() => {})
        return Promise.resolve({ done: true as const, value: undefined })
      }
    }
  }
})

/** The session over an open SFTP channel; `client` is watched too, so a dropped connection ends every wait. */
export const makeSession = (sftp: SFTPWrapper, client?: Client): RegistrySession => {
  watchClose(sftp, client)
  return session(sftp)
}

const session = (sftp: SFTPWrapper): RegistrySession => ({
  document: (want) =>
    // readFile is several requests (open, fstat, reads, close); `request` settles it if the session ends midway.
    Effect.tryPromise({
      try: () => request<Buffer>(sftp, (cb) => sftp.readFile(`/configs/${want}.json`, cb)),
      catch: (err) =>
        isNoSuchFile(err)
          ? new RegistryError({ message: `configuration "${want}" not found on the registry` })
          : sftpError(`cannot read configuration "${want}"`, err)
    }).pipe(
      Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new RegistryError({ message: `reading configuration "${want}" timed out` }) }),
      Effect.flatMap((data) => decodeDocument(data.toString("utf8"))),
      Effect.flatMap((doc) => checkDocument(want, doc))
    ),
  download: (hash) =>
    Stream.fromAsyncIterable(detachedReturn(() => parallelRead(sftp, `/${blobFile(hash)}`)), (err) =>
      isNoSuchFile(err) ? new RegistryError({ message: `blob ${hash} not found on the registry` }) : sftpError(`downloading blob ${hash}`, err)
    ).pipe(
      // A stalled connection must not hang the cycle forever.
      Stream.timeoutFail(() => new RegistryError({ message: `downloading blob ${hash}: no data for 60 s` }), "60 seconds"),
      Stream.flattenIterables
    )
})

export const RegistryClientLive = Layer.effect(
  RegistryClient,
  Effect.gen(function* () {
    const cfg = yield* AgentConfig
    return {
      connect: Effect.gen(function* () {
        const client = yield* connect({
          host: cfg.host,
          port: cfg.port,
          username: "deploy-agent",
          privateKey: cfg.privateKey,
          verifyHostKey: (key) => fingerprint(key) === cfg.fingerprint,
          hostKeyRefused: (seen) => `registry ${cfg.host}:${cfg.port} presented host key ${seen}, not the pinned ${cfg.fingerprint}`
        }).pipe(Effect.mapError((e) => new RegistryError({ message: e.message })))
        const sftp = yield* openSftp(client)
        return makeSession(sftp, client)
      })
    }
  })
)
