// The operator's upload-only SFTP: any path opened for writing becomes a fresh temp file from
// Uploads; the file is hashed as its writes complete, off the main thread (UploadHash.ts; an overlapping
// write means the file is hashed whole at CLOSE, SSH2.md pitfall 5). With a blob store that stages
// uploads (PostgreSQL: staged chunk rows), the bytes are also handed to its UploadStage in order (a
// bounded reorder buffer absorbs the out-of-order writes of ssh2's fastPut; past it the stage gives up);
// a WRITE is acknowledged once the stage has room, so a slower database slows the client instead of
// filling memory. CLOSE fsyncs and records the upload by its sha256. Reads, listings, removes and
// renames are refused. A session that ends with files still open discards them: an interrupted upload is
// never claimable.
import { Effect, FiberSet, Option } from "effect"
import * as fs from "node:fs"
import type { SFTPWrapper } from "ssh2"
import type { Principal } from "../domain/Principal.js"
import { advertiseLimits, dirAttrs, fileAttrs, MAX_OPEN_HANDLES, normalizePath, OPEN_FLAGS, STATUS } from "../ssh/SftpProtocol.js"
import { type Budgets, BUSY, type Counter, type HandleBudget, MAX_WRITE_GAP } from "./Limits.js"
import { recentPaths } from "./RecentPaths.js"
import { orderReplies } from "../ssh/SftpSession.js"
import { BlobStore, noStage, type UploadStage } from "./BlobStore.js"
import { LayerVerdicts } from "./LayerVerdicts.js"
import { type UploadHash, uploadHash } from "./UploadHash.js"
import { Uploads } from "./Uploads.js"

/** Out-of-order bytes held for the stage per open file; beyond this, the stage gives up. */
export const REORDER_LIMIT = 17 * 1024 * 1024

interface OpenUpload {
  /** The client's name for it, normalized: answered by STAT after the upload (rclone, paramiko). */
  readonly path: string
  readonly tempPath: string
  readonly fd: number
  /** Where the in-order bytes also go (BlobStore.stageUpload); completed at CLOSE only if every byte went. */
  readonly stage: UploadStage
  readonly hash: UploadHash
  /** Bytes [0, inOrder) went to `stage` in order. */
  inOrder: number
  /** Copies of writes that arrived ahead of `inOrder`, by offset. */
  readonly ahead: Map<number, Buffer>
  aheadBytes: number
  /** False once the stage cannot get every byte in order (overlap, or the reorder buffer overflowed), or with no stage. */
  streaming: boolean
  /** End of the furthest write. */
  size: number
  inFlight: number
  /** End of the furthest write accepted (some may still be in flight). */
  furthest: number
  idle: Array<() => void>
  failed: Error | undefined
  closing: boolean
  /** The failure was logged: one line per upload, however many writes fail. */
  logged: boolean
}

const DISK_FULL = new Set(["ENOSPC", "EDQUOT"])

/** A full disk (or quota), directly or as the cause of a StorageError. */
export const isDiskFull = (e: unknown): boolean => {
  for (let x: unknown = e, depth = 0; x !== null && typeof x === "object" && depth < 4; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code
    if (typeof code === "string" && DISK_FULL.has(code)) return true
  }
  return false
}

/** What the client is told (ssh2 and OpenSSH show the status message): never paths or internals. */
export const failureMessage = (e: unknown): string =>
  isDiskFull(e) ? "registry is out of disk space" : outOfFds(e) ? BUSY : e instanceof UploadTooLarge ? e.message : "cannot store upload"

const outOfFds = (e: unknown) => {
  const code = (e as { code?: unknown } | null)?.code
  return code === "EMFILE" || code === "ENFILE"
}

/** A WRITE beyond -max-upload: refused at once, never written. */
export class UploadTooLarge extends Error {
  constructor(max: number, why?: string) {
    super(why ?? `upload larger than the registry's limit of ${max} bytes (-max-upload)`)
  }
}

/** What the admin is told, once per upload. */
const logReason = (e: unknown): string =>
  isDiskFull(e) ? "no space left on device" : e instanceof Error ? e.message : String(e)

const writeAll = (fd: number, data: Buffer, position: number, cb: (err: Error | null) => void): void => {
  fs.write(fd, data, 0, data.length, position, (err, written) => {
    if (err) return cb(err)
    if (written < data.length) return writeAll(fd, data.subarray(written), position + written, cb)
    cb(null)
  })
}

/** Stops feeding the stage (it gives up at CLOSE) and gives back the reorder budget. */
const stopStreaming = (u: OpenUpload, reorder: Counter) => {
  u.streaming = false
  u.ahead.clear()
  reorder.give(u.aheadBytes)
  u.aheadBytes = 0
}

const trackWrite = (u: OpenUpload, offset: number, data: Buffer, reorder: Counter) => {
  if (!u.streaming) return
  if (offset === u.inOrder) {
    u.stage.push(data) // copies
    u.inOrder += data.length
    let next = u.ahead.get(u.inOrder)
    while (next !== undefined) {
      u.ahead.delete(u.inOrder)
      u.aheadBytes -= next.length
      reorder.give(next.length)
      u.stage.push(next)
      u.inOrder += next.length
      next = u.ahead.get(u.inOrder)
    }
  } else if (offset > u.inOrder && !u.ahead.has(offset) && u.aheadBytes + data.length <= REORDER_LIMIT && reorder.take(data.length)) {
    u.ahead.set(offset, Buffer.from(data))
    u.aheadBytes += data.length
  } else {
    stopStreaming(u, reorder)
  }
}

const handleBytes = (id: number) => {
  const h = Buffer.alloc(4)
  h.writeUInt32BE(id)
  return h
}

const writableDir = () => ({ ...dirAttrs(), mode: 0o040755 })

const fsync = (fd: number) => Effect.async<void, Error>((resume) => fs.fsync(fd, (e) => resume(e ? Effect.fail(e) : Effect.void)))
const closeFd = (fd: number) => Effect.async<void>((resume) => fs.close(fd, () => resume(Effect.void)))
// Gives back the space a failed upload holds at once, while its handle stays open until CLOSE.
const truncateQuietly = (fd: number) => fs.ftruncate(fd, 0, () => undefined)
const openFile = (path: string) =>
  Effect.async<number, Error>((resume) => fs.open(path, "w", 0o600, (e, fd) => resume(e ? Effect.fail(e) : Effect.succeed(fd))))

/** Serves one upload-only SFTP session until the client ends it. */
export const serveUpload = (sftp: SFTPWrapper, who: Principal, budget: HandleBudget, budgets: Budgets): Effect.Effect<void, never, Uploads | BlobStore> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Synchronously, before anything can yield: the client's INIT may already be in the same packet batch.
      const ordered = orderReplies(sftp)
      advertiseLimits(sftp, ordered.later)
      const uploads = yield* Uploads
      const blobs = yield* BlobStore
      // Where wired (main.ts), each upload is checked as it is hashed, and addver finds the verdict.
      const hashOptions = Option.match(yield* Effect.serviceOption(LayerVerdicts), { onNone: () => ({}), onSome: (v) => ({ onVerdict: v.record }) })
      const open = new Map<number, OpenUpload>()
      /** Handles of (empty) directory listings: `lftp mirror -R` and rclone list the target first. */
      const dirs = new Set<number>()
      const recent = recentPaths(uploads, who.fingerprint)
      const maxUpload = budgets.config.maxUpload
      /** Gives back what an upload holds of the budgets (once: `released` guards). */
      const release = (u: OpenUpload & { released?: boolean }) => {
        if (u.released) return
        u.released = true
        stopStreaming(u, budgets.reorder)
        u.hash.abandon()
        budget.give(true)
        budgets.uploadsPerKey.give(who.fingerprint)
      }
      let nextHandle = 1
      let opening = 0 // OPENs between the limit check and registration

      // Runs after the request fibers below are interrupted: whatever is still open was not finished.
      // Writes still in flight finish first: closing their fd under them could let a reused fd number
      // take bytes meant for this upload.
      const idle = (u: OpenUpload) =>
        u.inFlight === 0 ? Effect.void : Effect.async<void>((resume) => void u.idle.push(() => resume(Effect.void)))
      yield* Effect.addFinalizer(() =>
        Effect.forEach(
          [...open.values()],
          (u) => idle(u).pipe(Effect.zipRight(closeFd(u.fd)), Effect.zipRight(uploads.discard(u.tempPath)), Effect.zipRight(u.stage.abandon), Effect.ensuring(Effect.sync(() => release(u)))),
          { discard: true }
        ).pipe(
          Effect.tap(() => open.size > 0 ? Effect.logInfo(`upload by ${who.label} interrupted; discarded`) : Effect.void),
          Effect.ensuring(Effect.sync(() => {
            for (const _ of dirs) budget.give(false)
            dirs.clear()
          }))
        )
      )
      const run = yield* FiberSet.makeRuntime<never>()

      const lookup = (handle: Buffer): OpenUpload | undefined =>
        handle.length === 4 ? open.get(handle.readUInt32BE(0)) : undefined
      const deny = (reqId: number) => sftp.status(reqId, STATUS.PERMISSION_DENIED, "upload only")


      sftp.on("REALPATH", (reqId: number, p: string) => {
        const n = normalizePath(p)
        if (n === undefined) return sftp.status(reqId, STATUS.NO_SUCH_FILE)
        sftp.name(reqId, [{ filename: n, longname: n, attrs: dirAttrs() }])
      })
      // Remote names mean nothing here, but clients check what they wrote and where: `/`, the directories
      // this key made and the parents of what it uploaded are empty writable directories; a file this key
      // uploaded (or is uploading) has the size written; anything else is "no such file", which is what
      // `put` wants to hear.
      const attrsOf = (p: string) => {
        if (p === "/") return writableDir()
        for (const u of open.values()) if (u.path === p) return fileAttrs(u.size, new Date(), 0o600)
        const r = recent.get(p)
        return r === undefined ? undefined : r === "dir" ? writableDir() : fileAttrs(r.size, r.mtime, 0o600)
      }
      const stat = (reqId: number, p: string) => {
        const n = normalizePath(p)
        const a = n === undefined ? undefined : attrsOf(n)
        return a === undefined ? sftp.status(reqId, STATUS.NO_SUCH_FILE) : sftp.attrs(reqId, a)
      }
      sftp.on("STAT", stat)
      sftp.on("LSTAT", stat)
      // A folder upload (`put -r`, `scp -r`, `lftp mirror -R`, `rclone copy dir`) makes directories first.
      sftp.on("MKDIR", (reqId: number, p: string) => {
        const n = normalizePath(p)
        if (n === undefined) return sftp.status(reqId, STATUS.NO_SUCH_FILE)
        recent.dir(n)
        sftp.status(reqId, STATUS.OK)
      })
      sftp.on("OPENDIR", (reqId: number, p: string) => {
        const n = normalizePath(p)
        if (n === undefined || attrsOf(n) === undefined) return sftp.status(reqId, STATUS.NO_SUCH_FILE)
        if (open.size + dirs.size + opening >= MAX_OPEN_HANDLES) return sftp.status(reqId, STATUS.FAILURE, "too many open files")
        const why = budget.take(false)
        if (why !== undefined) return sftp.status(reqId, STATUS.FAILURE, why)
        const id = nextHandle++
        dirs.add(id)
        sftp.handle(reqId, handleBytes(id))
      })
      sftp.on("READDIR", (reqId: number, handle: Buffer) =>
        sftp.status(reqId, handle.length === 4 && dirs.has(handle.readUInt32BE(0)) ? STATUS.EOF : STATUS.FAILURE))

      sftp.on("OPEN", (reqId: number, filename: string, flags: number) => {
        // Any uploader's flags (the Go library and paramiko's 'w+' add READ); a READ on it is refused later.
        if ((flags & OPEN_FLAGS.WRITE) === 0) return deny(reqId)
        const path = normalizePath(filename)
        if (path === undefined) return sftp.status(reqId, STATUS.NO_SUCH_FILE)
        if (open.size + dirs.size + opening >= MAX_OPEN_HANDLES) return sftp.status(reqId, STATUS.FAILURE, "too many open files")
        // Every limit before any work: uploads per key, then handles and an fd of the operators' share.
        if (!budgets.uploadsPerKey.take(who.fingerprint)) {
          return sftp.status(reqId, STATUS.FAILURE, "too many uploads in progress for this key")
        }
        const why = budget.take(true)
        if (why !== undefined) {
          budgets.uploadsPerKey.give(who.fingerprint)
          return sftp.status(reqId, STATUS.FAILURE, why)
        }
        const id = nextHandle++
        opening++
        run(
          // Uninterruptible up to registration: a file opened as the session ends lands in `open`, which the
          // finalizer discards, instead of leaking its fd and temp file.
          Effect.uninterruptible(Effect.gen(function* () {
            const tempPath = yield* uploads.tempPath
            const fd = yield* openFile(tempPath).pipe(
              Effect.tapError(() => uploads.discard(tempPath))
            )
            const stage = yield* blobs.stageUpload
            open.set(id, {
              path, tempPath, fd, stage, hash: uploadHash(tempPath, hashOptions), inOrder: 0, ahead: new Map(), aheadBytes: 0,
              streaming: stage !== noStage, size: 0, inFlight: 0, furthest: 0, idle: [], failed: undefined, closing: false, logged: false
            })
            sftp.handle(reqId, handleBytes(id))
          })).pipe(
            Effect.ensuring(Effect.sync(() => void opening--)),
            Effect.tapError(() => Effect.sync(() => {
              budget.give(true)
              budgets.uploadsPerKey.give(who.fingerprint)
            })),
            Effect.catchAll((e) =>
              Effect.logError(`cannot start upload by ${who.label}: ${logReason(e)}`).pipe(
                Effect.zipRight(Effect.sync(() => sftp.status(reqId, STATUS.FAILURE, failureMessage(e))))
              )
            )
          )
        )
      })

      sftp.on("WRITE", (reqId: number, handle: Buffer, offset: number, data: Buffer) => {
        const u = lookup(handle)
        if (u === undefined || u.closing) return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        if (u.failed) return sftp.status(reqId, STATUS.FAILURE, failureMessage(u.failed))
        // Beyond -max-upload, or far beyond what was written: refused before anything is written (a far
        // offset would make a sparse giant that costs its whole size to hash).
        if (offset + data.length > maxUpload || offset > u.furthest + MAX_WRITE_GAP) {
          u.failed = offset + data.length > maxUpload ? new UploadTooLarge(maxUpload) : new UploadTooLarge(maxUpload, "write too far beyond the end of the upload")
          stopStreaming(u, budgets.reorder)
          truncateQuietly(u.fd)
          if (!u.logged) {
            u.logged = true
            run(Effect.logWarning(`upload by ${who.label} refused: ${u.failed.message}`))
          }
          return sftp.status(reqId, STATUS.FAILURE, u.failed.message)
        }
        u.furthest = Math.max(u.furthest, offset + data.length)
        u.hash.arrived(offset, data.length)
        trackWrite(u, offset, data, budgets.reorder)
        const length = data.length
        u.inFlight++
        // `data` stays valid until this callback (SSH2.md pitfall 8)
        writeAll(u.fd, data, offset, (err) => {
          u.inFlight--
          if (err) {
            if (u.failed === undefined) {
              u.failed = err
              if (isDiskFull(err)) truncateQuietly(u.fd)
            }
            if (!u.logged) {
              u.logged = true
              run(Effect.logError(`upload by ${who.label} failed: ${logReason(err)}`))
            }
            sftp.status(reqId, STATUS.FAILURE, failureMessage(err))
          } else {
            u.size = Math.max(u.size, offset + length)
            u.hash.wrote(offset, length)
            u.stage.whenRoom(() => sftp.status(reqId, STATUS.OK))
          }
          if (u.inFlight === 0) for (const f of u.idle.splice(0)) f()
        })
      })

      sftp.on("FSTAT", (reqId: number, handle: Buffer) => {
        const u = lookup(handle)
        if (u === undefined) return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        sftp.attrs(reqId, fileAttrs(u.size, new Date(), 0o600))
      })
      // Permissions and times of an upload mean nothing here; accept and ignore (OpenSSH sends them, rclone
      // sets the modification time of what it wrote and then checks it with STAT).
      sftp.on("SETSTAT", (reqId: number, p: string) => {
        const n = normalizePath(p)
        sftp.status(reqId, n !== undefined && attrsOf(n) !== undefined ? STATUS.OK : STATUS.NO_SUCH_FILE)
      })
      sftp.on("FSETSTAT", (reqId: number, handle: Buffer) =>
        sftp.status(reqId, lookup(handle) ? STATUS.OK : STATUS.FAILURE))

      sftp.on("CLOSE", (reqId: number, handle: Buffer) => {
        if (handle.length === 4 && dirs.delete(handle.readUInt32BE(0))) {
          budget.give(false)
          return sftp.status(reqId, STATUS.OK)
        }
        const u = lookup(handle)
        if (u === undefined) return sftp.status(reqId, STATUS.FAILURE, "bad handle")
        if (u.closing) return sftp.status(reqId, STATUS.FAILURE, "already closing")
        u.closing = true
        const id = handle.readUInt32BE(0)
        run(
          Effect.gen(function* () {
            if (u.inFlight > 0) yield* Effect.async<void>((resume) => void u.idle.push(() => resume(Effect.void)))
            if (u.failed) return yield* Effect.fail(u.failed)
            yield* fsync(u.fd)
            const staged = u.streaming && u.ahead.size === 0 && u.inOrder === u.size
            stopStreaming(u, budgets.reorder)
            const hash = yield* u.hash.digest(u.size)
            // Before the upload is claimable, so that addver finds its staged chunks.
            yield* staged ? u.stage.complete(hash, u.size) : u.stage.abandon
            // Once the temp file is handed over, finish: an interruption must not leave it half-recorded.
            yield* Effect.uninterruptible(
              closeFd(u.fd).pipe(
                Effect.zipRight(uploads.complete(u.tempPath, hash)),
                Effect.ensuring(Effect.sync(() => {
                  open.delete(id)
                  release(u)
                }))
              )
            )
            recent.file(u.path, u.size)
            yield* Effect.logInfo(`upload ${hash} (${u.size} bytes) by ${who.label}`)
            sftp.status(reqId, STATUS.OK)
          }).pipe(
            Effect.catchAll((e) =>
              Effect.gen(function* () {
                if (!u.logged) {
                  u.logged = true
                  yield* Effect.logError(`upload by ${who.label} failed: ${logReason(e)}`)
                }
                if (open.delete(id)) {
                  yield* closeFd(u.fd).pipe(Effect.zipRight(uploads.discard(u.tempPath)), Effect.zipRight(u.stage.abandon), Effect.ensuring(Effect.sync(() => release(u))))
                }
                sftp.status(reqId, STATUS.FAILURE, failureMessage(e))
              })
            )
          )
        )
      })

      for (const ev of ["READ", "REMOVE", "RMDIR", "RENAME", "READLINK", "SYMLINK"]) {
        sftp.on(ev, deny)
      }

      yield* Effect.async<void>((resume) => {
        sftp.on("end", ordered.finish) // SSH2.md pitfall 3; exit-status like sshd
        sftp.once("close", () => resume(Effect.void))
        sftp.on("error", () => resume(Effect.void))
      })
    })
  )
