// Request order and backpressure for one server-side SFTP session over ssh2's SFTPWrapper.
//
// Replies go out in request order, as OpenSSH's sftp-server sends them: scp writes in place and stops at the
// highest contiguous offset it got, and paramiko drops a reply that arrives early and then waits for it
// forever. Handlers still work concurrently (reads and disk writes overlap); only the sending is ordered.
// Every reply method of the session (status, handle, data, name, attrs, and ssh2's own OP_UNSUPPORTED
// answers) is routed through one queue, so no handler can get this wrong; raw replies use `later`.
//
// Backpressure: while a session has `maxInFlight` requests unanswered, or ssh2 holds replies waiting for the
// client's window, the session stops reading requests: what the client already sent waits as raw bytes, and
// the channel window is not adjusted, so the client can send at most one window (2 MiB) more. A client that
// pipelines requests and never reads its replies costs a bounded amount of memory.
import type { SFTPWrapper } from "ssh2"
import { adjustWindow, endAsSshd, interceptPush, peerWindow, repliesHeld, whenWindow, windowAdjustDue } from "./Ssh2Internals.js"

const REQUESTS = new Set([
  "OPEN", "READ", "WRITE", "FSTAT", "FSETSTAT", "CLOSE", "OPENDIR", "READDIR", "LSTAT", "STAT", "REMOVE", "RMDIR",
  "REALPATH", "READLINK", "SETSTAT", "MKDIR", "RENAME", "SYMLINK", "EXTENDED"
])
const REPLIES = ["status", "handle", "data", "name", "attrs"] as const

/** ssh2 gives every server channel this window and tops it up once half is used (lib/Channel.js). */
const MAX_WINDOW = 2 * 1024 * 1024
const WINDOW_THRESHOLD = MAX_WINDOW / 2

/** Requests a session may have unanswered before it stops reading more (OpenSSH's clients keep 64). */
export const MAX_IN_FLIGHT = 64

interface Slot {
  readonly reqId: number
  send: (() => void) | undefined
  /** Window the reply needs to go out whole (a DATA reply read ahead); it waits for that much if an adjustment is due. */
  need?: number
}

export interface OrderedSession {
  /**
   * Runs `send` (which writes the reply to `reqId`) once every earlier request has been answered, and, with
   * `need`, once the client's window has room for `need` bytes (unless no adjustment is due: a client with a
   * tiny window still gets its data, ssh2 queueing the rest).
   */
  readonly later: (reqId: number, send: () => void, need?: number) => void
  /** Requests received and not yet answered on the wire. */
  readonly pending: () => number
  /** Bytes received from the client and not yet read as requests (bounded by one window). */
  readonly backlogBytes: () => number
  /**
   * Ends the session as sshd does once every reply is out: exit-status 0, EOF, close. OpenSSH's scp in SFTP
   * mode exits 1 without exit-status.
   */
  readonly finish: () => void
}

/** Installs the reply order and backpressure; call synchronously when the subsystem is accepted. */
export const orderReplies = (sftp: SFTPWrapper, maxInFlight = MAX_IN_FLIGHT): OrderedSession => {
  const queue: Array<Slot | undefined> = []
  let head = 0
  const byReq = new Map<number, Array<Slot>>()
  let flushing = false
  let finishing = false

  const pending = () => queue.length - head
  const held = () => repliesHeld(sftp)

  const flush = () => {
    if (flushing) return
    flushing = true
    try {
      while (head < queue.length && queue[head]!.send !== undefined) {
        // One reply at a time in ssh2's queue: the rest wait here, unsent and mostly uncopied.
        if (held()) return whenWindow(sftp, flush)
        const slot = queue[head]!
        if (slot.need !== undefined && peerWindow(sftp) < slot.need && windowAdjustDue(sftp)) return whenWindow(sftp, flush)
        queue[head++] = undefined
        const same = byReq.get(slot.reqId)!
        if (same.length === 1) byReq.delete(slot.reqId)
        else same.shift()
        slot.send!()
      }
      if (head > 1024 && head * 2 > queue.length) {
        queue.splice(0, head)
        head = 0
      }
    } finally {
      flushing = false
    }
    resume()
    if (finishing && pending() === 0 && !held()) closeNow()
  }

  const later = (reqId: number, send: () => void, need?: number) => {
    const slot = byReq.get(reqId)?.find((x) => x.send === undefined)
    if (slot === undefined) return send() // not a request we saw (cannot happen with ssh2's parser)
    slot.send = send
    if (need !== undefined) slot.need = need
    if (queue[head] === slot) flush()
  }

  // Every request takes a slot as ssh2 parses it, before its handler runs.
  const emit = sftp.emit
  sftp.emit = function (this: unknown, ev: string | symbol, ...a: Array<unknown>) {
    if (typeof ev === "string" && REQUESTS.has(ev) && typeof a[0] === "number") {
      const slot: Slot = { reqId: a[0], send: undefined }
      queue.push(slot)
      const same = byReq.get(slot.reqId)
      if (same === undefined) byReq.set(slot.reqId, [slot])
      else same.push(slot)
    }
    return emit.call(this, ev, ...a)
  } as typeof sftp.emit
  for (const m of REPLIES) {
    const original = Reflect.get(sftp, m) as (this: unknown, reqId: number, ...a: Array<unknown>) => unknown
    Reflect.set(sftp, m, (reqId: number, ...a: Array<unknown>) => {
      // Sent from inside `later` (its slot is gone), or not a request we saw: as is.
      if (!byReq.has(reqId)) return void original.call(sftp, reqId, ...a)
      // A DATA payload that must wait is copied: the caller may reuse its buffer once this returns.
      if (m === "data" && Buffer.isBuffer(a[0]) && (queue[head]?.reqId !== reqId || held())) a[0] = Buffer.from(a[0])
      later(reqId, () => void original.call(sftp, reqId, ...a))
    })
  }

  // Reading requests stops while the session is full; ssh2 then leaves the window as it is.
  const backlog: Array<Buffer | null> = []
  let backlogged = 0
  let parsing = false
  const full = () => pending() >= maxInFlight || held()
  const parse = (data: Buffer | null) => {
    parsing = true
    try {
      push(data)
    } finally {
      parsing = false
    }
  }
  const push = interceptPush(sftp, (data) => {
    if (backlog.length > 0 || full()) {
      // A copy: ssh2 gives a view into its packet, which it need not keep intact once this returns.
      backlog.push(data === null ? null : Buffer.from(data))
      if (data !== null) backlogged += data.length
      return false
    }
    parse(data)
    return full() ? false : undefined
  })
  const resume = () => {
    if (parsing) return
    while (backlog.length > 0 && !full()) {
      const data = backlog.shift()!
      if (data !== null) backlogged -= data.length
      parse(data)
    }
    if (backlog.length === 0 && !full()) adjustWindow(sftp, WINDOW_THRESHOLD, MAX_WINDOW)
  }

  const closeNow = () => {
    finishing = false
    endAsSshd(sftp)
    sftp.end()
  }
  const finish = () => {
    finishing = true
    if (pending() === 0 && !held()) closeNow()
    else if (held()) whenWindow(sftp, flush)
  }

  return { later, pending, backlogBytes: () => backlogged, finish }
}
