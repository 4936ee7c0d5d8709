// The agent's view of the registry: SSH as `deploy-agent`, host key pinned by fingerprint,
// read-only SFTP. One session (connection + SFTP channel) per cycle, closed with its scope.
import { Context, Effect, Layer, type Scope } from "effect"
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
  /** `/files/<hash>`, fed to `sink` in order (parallel reads); the sink's failures pass through unchanged. */
  readonly download: <E>(hash: Sha256, sink: Sink<E>) => Effect.Effect<void, RegistryError | E>
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

/**
 * Receives a download in file order, a batch of consecutive pieces at a time. The pieces are pooled read
 * buffers: they are reused as soon as the returned Effect ends, so a sink must not keep them.
 */
export type Sink<E> = (pieces: ReadonlyArray<Buffer>) => Effect.Effect<void, E>

/** Bytes per READ: the registry's 255 KiB (limits@openssh.com raises ssh2's `_maxReadLen` to it). */
const MAX_CHUNK = 256 * 1024
/** Bytes of READs in flight (SSH2.md: large parallel reads). */
const WINDOW_BYTES = 8 * 1024 * 1024
const STALL_MS = 60_000

interface Slot {
  readonly pos: number
  readonly len: number
  readonly buf: Buffer
  got: number
}

/**
 * Reads `path` with a window of concurrent READs into pooled buffers and hands `sink` every run of reads
 * that has arrived, in order. Callbacks, not a Stream per read: allocation and per-element work per
 * 255 KiB read were most of the agent's download time (bench/profile.ts -mode agent-deploy).
 */
const readInto = <E>(
  sftp: SFTPWrapper,
  path: string,
  sink: Sink<E>,
  toError: (err: unknown) => RegistryError
): Effect.Effect<void, E | RegistryError> =>
  Effect.acquireUseRelease(
    Effect.tryPromise({ try: () => p<Buffer>(sftp, (cb) => sftp.open(path, "r", cb)), catch: toError }),
    (handle) =>
      Effect.gen(function* () {
        const { size } = yield* Effect.tryPromise({ try: () => p<{ size: number }>(sftp, (cb) => sftp.fstat(handle, cb)), catch: toError })
        const maxRead = (sftp as unknown as { _maxReadLen?: number })._maxReadLen ?? 32 * 1024
        const chunk = Math.max(16 * 1024, Math.min(MAX_CHUNK, maxRead))
        const window = Math.max(4, Math.min(64, Math.floor(WINDOW_BYTES / chunk)))
        const live = watchClose(sftp)
        const pool: Array<Buffer> = []
        const slots: Array<Slot> = []
        let next = 0
        let failure: Error | undefined
        let wake: (() => void) | undefined
        const notify = () => {
          const w = wake
          wake = undefined
          w?.()
        }
        const fail = (err: Error) => {
          failure ??= err
          notify()
        }
        const read = (slot: Slot) => {
          if (live.closed || !isOpen(sftp)) return fail(connectionClosed())
          try {
            sftp.read(handle, slot.buf, slot.got, slot.len - slot.got, slot.pos + slot.got, (err, n) => {
              if (err) return fail(err)
              // A server may answer short; ask for the rest. Nothing at all before the end: the file shrank.
              if (n === 0) return fail(new Error(`file ended at ${slot.pos + slot.got}, expected ${size} bytes`))
              slot.got += n
              if (slot.got < slot.len) return read(slot)
              if (slot === slots[0]) notify()
            })
          } catch (e) {
            fail(e instanceof Error ? e : new Error(String(e)))
          }
        }
        const fill = () => {
          while (next < size && slots.length < window && failure === undefined) {
            const len = Math.min(chunk, size - next)
            const slot: Slot = { pos: next, len, buf: pool.pop() ?? Buffer.allocUnsafe(chunk), got: 0 }
            slots.push(slot)
            next += len
            read(slot)
          }
        }
        const headArrived = Effect.async<void, RegistryError>((resume) => {
          const finish = () => resume(failure === undefined ? Effect.void : Effect.fail(toError(failure)))
          const ready = () => failure !== undefined || slots[0]!.got === slots[0]!.len
          if (ready()) return finish()
          const timer = setTimeout(() => fail(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS)
          const onClose = (err: Error) => fail(err)
          live.waiters.add(onClose)
          const stop = () => {
            clearTimeout(timer)
            live.waiters.delete(onClose)
            wake = undefined
          }
          const check = () => {
            if (!ready()) return void (wake = check)
            stop()
            finish()
          }
          wake = check
          return Effect.sync(stop)
        })
        fill()
        while (slots.length > 0) {
          yield* headArrived
          let n = 1
          while (n < slots.length && slots[n]!.got === slots[n]!.len) n++
          const batch = slots.splice(0, n)
          fill() // keep the window full while the sink works
          yield* sink(batch.map((s) => (s.len === s.buf.length ? s.buf : s.buf.subarray(0, s.len))))
          for (const s of batch) pool.push(s.buf)
          fill()
        }
      }),
    // Not awaited: a stalled server must not hold up the cycle's shutdown; ending the session fails any pending read.
    (handle) => Effect.sync(() => void request(sftp, (cb) => sftp.close(handle, (err) => cb(err, undefined))).catch(() => {}))
  )

/**
 * Largest configuration document the agent reads (documents are a few KiB). A registry, or anyone
 * holding its host key, could otherwise send an endless one and exhaust the agent's memory.
 */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

class TooLarge extends Error {}

/** Reads `file` to its end, one READ at a time, failing as soon as it exceeds `limit` bytes (whatever FSTAT claims). */
const readCapped = async (sftp: SFTPWrapper, file: string, limit: number): Promise<Buffer> => {
  const handle = await request<Buffer>(sftp, (cb) => sftp.open(file, "r", cb))
  try {
    const maxRead = (sftp as unknown as { _maxReadLen?: number })._maxReadLen ?? 32 * 1024
    const chunk = Math.max(1024, Math.min(MAX_CHUNK, maxRead))
    const parts: Array<Buffer> = []
    let total = 0
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(chunk, limit + 1 - total))
      const n = await request<number>(sftp, (cb) => sftp.read(handle, buf, 0, buf.length, total, (err, n) => cb(err, n)))
      if (n === 0) return Buffer.concat(parts, total)
      parts.push(buf.subarray(0, n))
      total += n
      if (total > limit) throw new TooLarge(`larger than ${limit} bytes, the most the agent reads`)
    }
  } finally {
    void request(sftp, (cb) => sftp.close(handle, (err) => cb(err, undefined))).catch(() => {})
  }
}

/** The session over an open SFTP channel; `client` is watched too, so a dropped connection ends every wait. */
export const makeSession = (sftp: SFTPWrapper, client?: Client, options?: { readonly maxDocumentBytes?: number }): RegistrySession => {
  watchClose(sftp, client)
  return session(sftp, options?.maxDocumentBytes ?? MAX_DOCUMENT_BYTES)
}

const session = (sftp: SFTPWrapper, maxDocumentBytes: number): RegistrySession => ({
  document: (want) =>
    // Several requests (open, reads, close); `request` settles each if the session ends midway.
    Effect.tryPromise({
      try: () => readCapped(sftp, `/configs/${want}.json`, maxDocumentBytes),
      catch: (err) =>
        isNoSuchFile(err)
          ? new RegistryError({ message: `configuration "${want}" not found on the registry` })
          : err instanceof TooLarge
            ? new RegistryError({ message: `configuration "${want}" from the registry is ${err.message}; refused` })
            : sftpError(`cannot read configuration "${want}"`, err)
    }).pipe(
      Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => new RegistryError({ message: `reading configuration "${want}" timed out` }) }),
      Effect.flatMap((data) => decodeDocument(data.toString("utf8"))),
      Effect.flatMap((doc) => checkDocument(want, doc))
    ),
  download: (hash, sink) =>
    readInto(sftp, `/${blobFile(hash)}`, sink, (err) =>
      isNoSuchFile(err) ? new RegistryError({ message: `blob ${hash} not found on the registry` }) : sftpError(`downloading blob ${hash}`, err)
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
          ...(cfg.certificate !== undefined ? { certificate: cfg.certificate } : {}),
          refused: `the registry refused ${cfg.keyDescription ?? "the key"}: add its public key to the registry's service keys file (-srvauth); deploy-agent logs in only with those`,
          verifyHostKey: (key) => fingerprint(key) === cfg.fingerprint,
          hostKeyRefused: (seen) => `registry ${cfg.host}:${cfg.port} presented host key ${seen}, not the pinned ${cfg.fingerprint}`
        }).pipe(Effect.mapError((e) => new RegistryError({ message: e.message })))
        const sftp = yield* openSftp(client)
        return makeSession(sftp, client)
      })
    }
  })
)
