// The deploy-agent's read-only SFTP view:
//   /configs/            one `<name>.json` per configuration, byte order
//   /configs/<name>.json the configuration document (served from a snapshot buffer)
//   /files/<sha256>      a stored blob (positioned reads on an fd, 255 KiB at most per READ)
//   /signatures/<name>.json  the signatures of the state the connection is served (Signatures.ts); not listed anywhere, so a
//                        Go agent sees the view it always saw
// Client paths are resolved against `/` with POSIX rules and then matched exactly, so no spelling of a
// path reaches anything outside the view. Every change is refused. A scoped key (AgentScope.ts) sees
// only its configurations and their recent blobs; the rest is "no such file", exactly as a missing one.
import { Effect, FiberSet, Option } from "effect"
import * as fs from "node:fs"
import type { FileEntry, SFTPWrapper } from "ssh2"
import type { ConfigurationDocument } from "../domain/Document.js"
import type { StorageError } from "../domain/Errors.js"
import type { Principal } from "../domain/Principal.js"
import {
  advertiseLimits, DATA_HEADER, dirAttrs, fileAttrs, MAX_IO, MAX_OPEN_HANDLES, normalizePath, OPEN_FLAGS, sendData, STATUS
} from "../ssh/SftpProtocol.js"
import { orderReplies } from "../ssh/SftpSession.js"
import type { ConfigScope } from "../domain/ConfigScope.js"
import { agentScope } from "./AgentScope.js"
import { viewFiles } from "./AgentViewFiles.js"
import { resolveViewPath } from "./AgentViewPath.js"
import { BlobStore, type Filling } from "./BlobStore.js"
import { Signatures } from "./Signatures.js"
import { BUSY, type HandleBudget } from "./Limits.js"
import { Storage } from "./Storage.js"

export { resolveViewPath, type ViewPath } from "./AgentViewPath.js"

type Handle =
  | { readonly _tag: "Buffer"; readonly data: Buffer; readonly mtime: Date }
  | { readonly _tag: "File"; readonly fd: number; readonly size: number; readonly mtime: Date; readonly filling: Filling | undefined }
  | { readonly _tag: "Dir"; entries: Array<FileEntry> | undefined }

const READDIR_BATCH = 100
/**
 * File READs in flight per session. OpenSSH's sftp keeps 64 requests outstanding; libuv reads 4 at a time
 * anyway, so the rest wait here as numbers rather than as 255 KiB buffers, and the few buffers are reused.
 */
const READS_IN_FLIGHT = 8
const READ_BUFFER = DATA_HEADER + MAX_IO

/**
 * Serves one read-only SFTP session for an agent until the client ends it. `configurations`: the key's
 * scope (trust); `documentRead` hears of every configuration document opened (HostStatus records what
 * hosts that only poll were served).
 */
export const serveAgentView = (
  sftp: SFTPWrapper,
  who: Principal,
  budget: HandleBudget,
  configurations?: ConfigScope,
  documentRead?: (name: string, hash: string) => void,
  /** The document this connection's host is served (a rollout serves hosts differently); default: the current one. */
  documentOf?: (name: string) => Effect.Effect<Option.Option<ConfigurationDocument>, StorageError>
): Effect.Effect<void, never, Storage | BlobStore | Signatures> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Synchronously, before anything can yield: the client's INIT may already be in the same packet batch.
      const ordered = orderReplies(sftp)
      advertiseLimits(sftp, ordered.later)
      const storage = yield* Storage
      const blobs = yield* BlobStore
      const signatures = yield* Signatures
      const scope = agentScope(storage, configurations)
      const handles = new Map<number, Handle>()
      let nextHandle = 1
      /** Reads queued or in flight per handle, and the CLOSE waiting for them. */
      const reading = new Map<Handle, number>()
      const closeWhenIdle = new Map<Handle, () => void>()
      /** Set once the session is over: nothing more is sent, and no new read starts. */
      let ended = false
      // File reads: at most READS_IN_FLIGHT at once, each into a pooled buffer laid out as a DATA packet.
      const queued: Array<{ reqId: number; h: Extract<Handle, { _tag: "File" }>; offset: number; len: number }> = []
      const pool: Array<Buffer> = []
      const readDone = (h: Handle) => {
        const left = reading.get(h)! - 1
        if (left > 0) return void reading.set(h, left)
        reading.delete(h)
        const close = closeWhenIdle.get(h)
        closeWhenIdle.delete(h)
        close?.()
      }
      /** Reads started whose reply is not sent yet (each holds a pooled buffer until it is). */
      let inFlight = 0
      const pumpReads = () => {
        while (inFlight < READS_IN_FLIGHT && queued.length > 0 && !ended) {
          const { reqId, h, offset, len } = queued.shift()!
          const buf = pool.pop() ?? Buffer.allocUnsafe(READ_BUFFER)
          inFlight++
          const read = (fillError: StorageError | undefined) =>
            fs.read(h.fd, buf, DATA_HEADER, fillError === undefined ? len : 0, offset, (err, bytesRead) => {
              readDone(h) // the fd is no longer in use
              // Read ahead of the client's window, sent once the window has room for the whole reply: handing
              // ssh2 a reply it cannot send made it copy the rest into its queue (255 KiB allocated per READ;
              // a third of a download's CPU went to that and its GC), and starting the read only once the
              // window had room put the read's latency into every window cycle.
              ordered.later(reqId, () => {
                inFlight--
                if (!ended) {
                  if (err || fillError) sftp.status(reqId, STATUS.FAILURE)
                  else if (bytesRead === 0) sftp.status(reqId, STATUS.EOF)
                  else sendData(sftp, reqId, buf, bytesRead)
                }
                pool.push(buf)
                pumpReads()
              }, DATA_HEADER + len)
            })
          // A blob still arriving (a cache fill): the read waits for its bytes.
          if (h.filling === undefined) read(undefined)
          else h.filling.whenReady(offset + len, read)
        }
      }

      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          ended = true
          for (const q of queued.splice(0)) readDone(q.h) // never started: they hold no fd use
          // A read still in flight keeps its fd open until it returns (readDone closes it): closing now
          // could let the fd number be reused by another session's file under that read.
          const closeFd = (h: Handle) => () => (h._tag === "File" ? fs.close(h.fd, () => undefined) : undefined)
          for (const h of handles.values()) {
            if (reading.has(h)) closeWhenIdle.set(h, closeFd(h))
            else closeFd(h)()
          }
          for (const h of handles.values()) budget.give(h._tag === "File")
          handles.clear()
          for (const [h] of closeWhenIdle) if (!reading.has(h)) closeFd(h)()
        })
      )
      const run = yield* FiberSet.makeRuntime<never>()

      const lookup = (handle: Buffer) => (handle.length === 4 ? handles.get(handle.readUInt32BE(0)) : undefined)
      // A handle is reserved before any work for it (a listing, an fd) and registered once it exists; the
      // limits (session, connection, key, fd share) are checked at reservation.
      let reserved_ = 0
      const reserve = (reqId: number, withFd: boolean): boolean => {
        if (handles.size + reserved_ >= MAX_OPEN_HANDLES) {
          sftp.status(reqId, STATUS.FAILURE, "too many open files")
          return false
        }
        const why = budget.take(withFd)
        if (why !== undefined) {
          sftp.status(reqId, STATUS.FAILURE, why)
          return false
        }
        reserved_++
        return true
      }
      const unreserve = (withFd: boolean) => {
        reserved_--
        budget.give(withFd)
      }
      const newHandle = (reqId: number, h: Handle): void => {
        reserved_--
        const id = nextHandle++
        handles.set(id, h)
        const b = Buffer.alloc(4)
        b.writeUInt32BE(id)
        sftp.handle(reqId, b)
      }
      /** Runs `eff` holding a reservation, which it must turn into a handle; released if it does not. */
      const withReservation = (reqId: number, withFd: boolean, eff: Effect.Effect<boolean, { readonly message: string }>) => {
        if (!reserve(reqId, withFd)) return
        answer(reqId, eff.pipe(Effect.tapBoth({ onFailure: () => Effect.sync(() => unreserve(withFd)), onSuccess: (made) => made ? Effect.void : Effect.sync(() => unreserve(withFd)) })))
      }
      const deny = (reqId: number) => sftp.status(reqId, STATUS.PERMISSION_DENIED, "read-only")
      const noSuchFile = (reqId: number) => sftp.status(reqId, STATUS.NO_SUCH_FILE)
      // Failures reading our own store are logged; the client only learns that the request failed.
      const answer = (reqId: number, eff: Effect.Effect<void, { readonly message: string }>) =>
        void run(
          eff.pipe(
            Effect.catchAll((e) =>
              Effect.logError(`agent view for ${who.label}: ${e.message}`).pipe(
                Effect.zipRight(Effect.sync(() => sftp.status(reqId, STATUS.FAILURE)))
              )
            )
          )
        )

      const { fileBytes, attrsOf, sharedListing } = viewFiles(storage, blobs, signatures, scope, documentOf)

      sftp.on("REALPATH", (reqId: number, p: string) => {
        const n = normalizePath(p)
        if (n === undefined) return noSuchFile(reqId)
        sftp.name(reqId, [{ filename: n, longname: n, attrs: dirAttrs() }])
      })

      const stat = (reqId: number, p: string) => {
        const v = resolveViewPath(p)
        if (v === undefined) return noSuchFile(reqId)
        answer(reqId, attrsOf(v).pipe(Effect.map((a) => (a ? sftp.attrs(reqId, a) : noSuchFile(reqId)))))
      }
      sftp.on("STAT", stat)
      sftp.on("LSTAT", stat)

      sftp.on("OPENDIR", (reqId: number, p: string) => {
        const v = resolveViewPath(p)
        if (v === undefined) return noSuchFile(reqId)
        if (v._tag !== "Dir") return sftp.status(reqId, STATUS.FAILURE, "not a directory")
        withReservation(reqId, false, sharedListing(v.dir).pipe(Effect.map((entries) => {
          newHandle(reqId, { _tag: "Dir", entries: entries.slice() })
          return true
        })))
      })

      sftp.on("READDIR", (reqId: number, handle: Buffer) => {
        const h = lookup(handle)
        if (h === undefined || h._tag !== "Dir") return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        if (h.entries === undefined || h.entries.length === 0) {
          h.entries = undefined
          return sftp.status(reqId, STATUS.EOF)
        }
        sftp.name(reqId, h.entries.splice(0, READDIR_BATCH))
      })

      sftp.on("OPEN", (reqId: number, p: string, flags: number) => {
        const writing = OPEN_FLAGS.WRITE | OPEN_FLAGS.APPEND | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC | OPEN_FLAGS.EXCL
        if ((flags & writing) !== 0) return deny(reqId)
        const v = resolveViewPath(p)
        if (v === undefined) return noSuchFile(reqId)
        switch (v._tag) {
          case "Dir":
            return sftp.status(reqId, STATUS.FAILURE, "is a directory")
          case "Config":
          case "Signatures":
            return withReservation(
              reqId,
              false,
              fileBytes(v).pipe(
                Effect.map(Option.match({
                  onNone: () => (noSuchFile(reqId), false),
                  onSome: (d) => (d.hash !== undefined && documentRead?.(v.name, d.hash), newHandle(reqId, { _tag: "Buffer", data: d.data, mtime: d.mtime }), true)
                }))
              )
            )
          case "Blob":
            return withReservation(
              reqId,
              true,
              Effect.gen(function* () {
                const info = (yield* scope.mayReadBlob(v.hash)) ? yield* blobs.stat(v.hash) : undefined
                if (info === undefined) return (noSuchFile(reqId), false)
                const file = yield* Effect.option(blobs.serve(v.hash))
                if (Option.isNone(file)) return (sftp.status(reqId, STATUS.FAILURE, "cannot open"), false)
                const { filling } = file.value
                // Uninterruptible from open to registration: an fd opened for a session that ended meanwhile
                // must still land in `handles`, which the finalizer closes.
                return yield* Effect.uninterruptible(
                  Effect.async<boolean>((resume) => {
                    const opened = (e: NodeJS.ErrnoException | null, fd: number) => {
                      // A fill that just ended was renamed into place.
                      if (e?.code === "ENOENT" && filling !== undefined && path !== filling.final) return fs.open((path = filling.final), "r", opened)
                      if (e === null) {
                        newHandle(reqId, { _tag: "File", fd, size: info.size, mtime: info.mtime, filling: path === file.value.path ? filling : undefined })
                        return resume(Effect.succeed(true))
                      }
                      // Out of descriptors is the registry's trouble, never "no such file".
                      if (e.code === "ENOENT") noSuchFile(reqId)
                      else sftp.status(reqId, STATUS.FAILURE, e.code === "EMFILE" || e.code === "ENFILE" ? BUSY : "cannot open")
                      resume(Effect.succeed(false))
                    }
                    let path = file.value.path
                    fs.open(path, "r", opened)
                  })
                )
              })
            )
        }
      })

      sftp.on("READ", (reqId: number, handle: Buffer, offset: number, len: number) => {
        const h = lookup(handle)
        if (h === undefined || h._tag === "Dir") return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        const n = Math.min(len, MAX_IO)
        if (h._tag === "Buffer") {
          if (offset >= h.data.length) return sftp.status(reqId, STATUS.EOF) // SSH2.md pitfall 6
          return sftp.data(reqId, h.data.subarray(offset, offset + n))
        }
        if (offset >= h.size) return sftp.status(reqId, STATUS.EOF)
        queued.push({ reqId, h, offset, len: Math.min(n, h.size - offset) })
        reading.set(h, (reading.get(h) ?? 0) + 1)
        pumpReads()
      })

      sftp.on("FSTAT", (reqId: number, handle: Buffer) => {
        const h = lookup(handle)
        if (h === undefined) return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        sftp.attrs(reqId, h._tag === "Dir" ? dirAttrs() : h._tag === "Buffer" ? fileAttrs(h.data.length, h.mtime) : fileAttrs(h.size, h.mtime))
      })

      sftp.on("CLOSE", (reqId: number, handle: Buffer) => {
        const h = lookup(handle)
        if (h === undefined) return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        handles.delete(handle.readUInt32BE(0))
        budget.give(h._tag === "File")
        if (h._tag === "File") {
          // After the reads still queued or in flight on it: its fd number must not be reused under them.
          const closeFd = () => fs.close(h.fd, () => sftp.status(reqId, STATUS.OK))
          if (reading.has(h)) closeWhenIdle.set(h, closeFd)
          else closeFd()
          return
        }
        sftp.status(reqId, STATUS.OK)
      })

      sftp.on("READLINK", noSuchFile)
      for (const ev of ["WRITE", "SETSTAT", "FSETSTAT", "REMOVE", "RMDIR", "MKDIR", "RENAME", "SYMLINK"]) {
        sftp.on(ev, deny)
      }

      yield* Effect.async<void>((resume) => {
        sftp.on("end", ordered.finish) // SSH2.md pitfall 3; exit-status like sshd
        sftp.once("close", () => {
          ended = true
          resume(Effect.void)
        })
        sftp.on("error", () => resume(Effect.void))
      })
    })
  )
