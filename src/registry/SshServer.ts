// The registry's SSH listener over ssh2. We accept TCP ourselves (TCP_NODELAY on every socket, SSH2.md
// pitfall 1; a 20 s limit on the handshake including authentication; -deadline on the whole connection)
// and hand each socket to ssh2 with injectSocket. A connection is callbacks on its socket; its sessions are
// fibers in a FiberSet created after the listener, so closing the layer's scope stops accepting, closes the
// connections, interrupts their sessions (whose finalizers discard unfinished uploads and close files) and
// then closes the listener.
import { Context, Duration, Effect, Exit, type Fiber, FiberId, FiberSet, Layer, LogLevel, Option } from "effect"
import * as crypto from "node:crypto"
import * as net from "node:net"
import ssh2 from "ssh2"
import type { AuthContext, Connection, ParsedKey, ServerChannel } from "ssh2"
import type { Principal } from "../domain/Principal.js"
import { StartupError } from "../domain/StartupError.js"
import { quote } from "../domain/LogText.js"
import { serverAlgorithms } from "../ssh/Algorithms.js"
import { coalesceWrites } from "../ssh/CoalesceWrites.js"
import { fingerprint } from "../ssh/Fingerprint.js"
import { HostKey } from "../ssh/HostKey.js"
import { checkSsh2, connectionSocket, signWithKeyObject } from "../ssh/Ssh2Internals.js"
import { Auth, type Role, type SessionLimits } from "./Auth.js"
import type { BlobStore } from "./BlobStore.js"
import { CommandInterpreter, type CommandResult } from "./CommandInterpreter.js"
import { logNow } from "./LogNow.js"
import { Attempts, makeLimiter } from "./RefusedLogins.js"
import { type Budgets, Counter, defaultLimits, handleBudget, type LimitsConfig, makeBudgets } from "./Limits.js"
import { Rollouts } from "./Rollouts.js"
import { serveAgentView } from "./SftpAgentView.js"
import { serveUpload } from "./SftpUpload.js"
import { authFailuresBy, bump, bytesBy, connectionsBy, connectionsOpenBy, sftpSessionsBy, watchersConnected } from "./RegistryMetrics.js"
import { runShell, type Terminal } from "./Shell.js"
import type { Storage } from "./Storage.js"
import type { Signatures } from "./Signatures.js"
import type { Uploads } from "./Uploads.js"
import type { ChangeFeed } from "./ChangeFeed.js"
import { type AgentLink, HostStatus } from "./HostStatus.js"
import { makeWatchFanout } from "./WatchFanout.js"
import { defaultWatchOptions, isWatchCommand, serveWatch, type WatchOptions } from "./WatchSession.js"
import { isEventsCommand, serveEvents } from "./EventsSession.js"
import { OperatorEvents } from "./OperatorEvents.js"

export interface SshServerOptions {
  /** Host to bind; "" binds every interface. */
  readonly host: string
  /** 0 picks a free port (logged). */
  readonly port: number
  /** Longest lifetime of one connection (-deadline). */
  readonly deadline: Duration.DurationInput
  /** Time from TCP accept to a successful login; default 20 s. */
  readonly handshakeTimeout?: Duration.DurationInput
  /** What clients may hold (connections, sessions, handles, uploads); defaults from Limits.ts. */
  readonly limits?: Partial<LimitsConfig>
  /** Agent sessions (`watch`, WatchSession.ts); default on, 10 s pings. */
  readonly watch?: WatchOptions
}

export class SshServer extends Context.Tag("registry/SshServer")<
  SshServer,
  { readonly address: { readonly host: string; readonly port: number } }
>() {}

type Services = Auth | CommandInterpreter | Uploads | Storage | BlobStore | Signatures | ChangeFeed | HostStatus | Rollouts

interface Login {
  readonly role: Role
  readonly principal: Principal
  readonly limits: SessionLimits
}

const peer = (s: net.Socket) => `${s.remoteAddress ?? "?"}:${s.remotePort ?? "?"}`

/** One exec request's reply: the command's output on stdout, its status as the exit status, stderr empty. */
const reply = (channel: ServerChannel, result: CommandResult, term: Terminal) => {
  if (channel.writable && result.output !== "") {
    channel.write(term.pty ? result.output.replace(/\r?\n/g, "\r\n") : result.output)
  }
  channel.exit(result.exitCode)
  channel.end()
}

/** Counts an open watch session for deploy_registry_watchers_connected. */
const watching = <A, E, R>(session: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(Effect.sync(() => bump(watchersConnected)), () => session, () => Effect.sync(() => bump(watchersConnected, -1)))

const rejectAll = (_accept: unknown, reject?: () => void) => reject?.()

/**
 * The host key for ssh2 with its private half as a KeyObject made once (Ssh2Internals.signWithKeyObject):
 * ssh2 keeps the PEM text and hands it to node:crypto for every handshake's signature, which parses it again
 * each time.
 */
const hostKeyForSsh2 = (pem: Buffer): { key: ParsedKey } => {
  const parsed = ssh2.utils.parseKey(pem) as ParsedKey | Array<ParsedKey> | Error
  if (parsed instanceof Error) throw parsed
  const key = Array.isArray(parsed) ? parsed[0]! : parsed
  signWithKeyObject(key, crypto.createPrivateKey(key.getPrivatePEM()))
  return { key } // ssh2 takes a parsed key only in this form
}

const make = (opts: SshServerOptions) =>
  Effect.gen(function* () {
    const hostKey = yield* HostKey
    const auth = yield* Auth
    const interpreter = yield* CommandInterpreter
    const hostStatus = yield* HostStatus
    const rollouts = yield* Rollouts
    // One subscriber to the change feed for all watch sessions: a read per configuration and event, shared.
    const fanout = yield* makeWatchFanout
    // The `events` stream, when wired (main.ts); without it `events` is answered by the interpreter (an error).
    const operatorEvents = yield* Effect.serviceOption(OperatorEvents)
    const watch = opts.watch ?? defaultWatchOptions
    const handshakeTimeout = Duration.decode(opts.handshakeTimeout ?? "20 seconds")
    const deadline = Duration.decode(opts.deadline)
    const budgets: Budgets = makeBudgets({ ...defaultLimits(), ...opts.limits })

    const ssh2Problem = checkSsh2()
    if (ssh2Problem !== undefined) return yield* new StartupError({ message: ssh2Problem })
    const hostKeyOption = yield* Effect.try({
      try: () => hostKeyForSsh2(hostKey.privateKey),
      catch: (e) => new StartupError({ message: `cannot use the host key with ssh2: ${e instanceof Error ? e.message : String(e)}` })
    })
    const ssh = new ssh2.Server({ hostKeys: [hostKeyOption], ident: "deploy-registry", algorithms: serverAlgorithms })
    const refusedLine = makeLimiter()
    // ssh2 emits "connection" when the client's version line arrives; we find our socket's handler by socket.
    const attachers = new Map<net.Socket, (conn: Connection) => void>()
    ssh.on("connection", (conn: Connection) => {
      const sock = connectionSocket(conn)
      const attach = attachers.get(sock)
      attachers.delete(sock)
      if (attach) attach(conn)
      else conn.end()
    })

    const sockets = new Set<net.Socket>()
    let accepting = true
    const tcp = yield* Effect.acquireRelease(
      Effect.async<net.Server, StartupError>((resume) => {
        const srv = net.createServer()
        srv.once("error", (e: NodeJS.ErrnoException) => {
          const why = e.code === "EADDRINUSE" ? "address already in use" : e.code === "EACCES" ? "permission denied" : e.message
          resume(Effect.fail(new StartupError({ message: `cannot listen on ${opts.host}:${opts.port}: ${why}` })))
        })
        srv.listen({ port: opts.port, ...(opts.host === "" ? {} : { host: opts.host }) }, () => resume(Effect.succeed(srv)))
      }),
      (srv) =>
        Effect.async<void>((resume) => {
          accepting = false
          for (const s of sockets) s.destroy()
          if (srv.listening) srv.close(() => resume(Effect.void))
          else if (sockets.size === 0) resume(Effect.void)
          else srv.once("close", () => resume(Effect.void))
        })
    )
    tcp.on("error", () => undefined) // after listen, errors concern single accepts

    const runFork = yield* FiberSet.makeRuntime<Services>()
    // Log lines of the connection callbacks, without a fiber per line.
    const log = yield* logNow
    // Runs first at shutdown: nothing new gets in, and the connections close (each interrupts its
    // sessions) before the FiberSet above waits for the sessions' finalizers.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        accepting = false
        tcp.close() // stop listening now; the release above completes once the sockets are gone
        const open = sockets.size
        for (const s of sockets) s.destroy()
        return Effect.logInfo(`shutting down: closing ${open} connection(s)`)
      })
    )

    // A connection is plain callbacks, not a fiber: a fiber, its scope and its FiberSet per connection were
    // a quarter of a handshake's CPU. Only its sessions are fibers (in the listener's FiberSet, so closing
    // the layer interrupts them); `end` interrupts the ones still running when the connection goes.
    const handleSocket = (socket: net.Socket) => {
      const from = peer(socket)
      const acceptedAt = Date.now()
      const fibers = new Set<Fiber.RuntimeFiber<unknown, unknown>>()
      const runConn = (effect: Effect.Effect<unknown, unknown, Services>) => {
        const fiber = runFork(effect)
        if (fiber.unsafePoll() !== null) return
        fibers.add(fiber)
        fiber.addObserver(() => fibers.delete(fiber))
      }
      /** An operator command: answered in this callback when the interpreter has the answer at hand, else in a fiber. */
      const runExec = (channel: ServerChannel, command: string, who: Principal, term: Terminal) => {
        const answer = interpreter.run(command, who)
        const now = Exit.isExit(answer) ? (answer as Exit.Exit<CommandResult>) : undefined
        if (now !== undefined && Exit.isSuccess(now)) return reply(channel, now.value, term)
        runConn(Effect.map(answer, (result) => reply(channel, result, term)))
      }
      let conn: Connection | undefined
      let login: Login | undefined
      /** pending until "ready" with a login, then in; ended once. */
      let state: "pending" | "in" | "ended" = "pending"
      // The agent on this connection: its key and address, and the host it names once it watches.
      let link: AgentLink | undefined
      const refused = new Attempts()
      // What this connection holds: session channels, SFTP handles over all its sessions.
      const sessions = new Counter(budgets.config.maxSessions)
      const handles = new Counter(budgets.config.maxHandles)
      let holdsAgentConn = false
      /** The role counted in connectionsOpenBy while the connection is in. */
      let openAs: Role | undefined
      let deadlineTimer: NodeJS.Timeout | undefined
      const end = (why: "closed" | "timeout" | "deadline" | "limit") => {
        if (state === "ended") return
        const was = state
        state = "ended"
        clearTimeout(handshakeTimer)
        clearTimeout(deadlineTimer)
        if (was === "pending") {
          bump(connectionsOpenBy.pending, -1)
          bump(connectionsBy("none", refused.empty ? (why === "timeout" ? "timeout" : "closed") : "refused"))
          const line = refused.empty ? undefined : refusedLine(refused.describe(from))
          if (line !== undefined) log(LogLevel.Warning, line)
          if (why === "timeout") log(LogLevel.Info, `dropped ${from}: no login within ${Duration.format(handshakeTimeout)}`)
        } else if (why === "deadline") {
          log(LogLevel.Info, `closing ${from}: connection older than ${Duration.format(deadline)} (-deadline)`)
        }
        attachers.delete(socket)
        try {
          conn?.end()
        } catch {
          // already gone
        }
        socket.destroy()
        const counted = bytesBy[login?.role ?? "none"]
        bump(counted.in, socket.bytesRead)
        bump(counted.out, socket.bytesWritten)
        if (holdsAgentConn) budgets.agentConns.give()
        if (openAs !== undefined) bump(connectionsOpenBy[openAs], -1)
        for (const fiber of fibers) fiber.unsafeInterruptAsFork(FiberId.none)
      }
      /** After "ready": the login counts, or the connection closes (agent connections over their share). */
      const loggedIn = (who: Login) => {
        clearTimeout(handshakeTimer) // the limit is on getting in, not on staying
        bump(connectionsOpenBy.pending, -1)
        // Agents get at most three quarters of the connections, so an operator always gets in.
        if (who.role === "agent") {
          if (!budgets.agentConns.take()) {
            state = "in" // counted: no longer pending, never open
            bump(connectionsBy("agent", "limit"))
            log(LogLevel.Warning, `closing ${from}: too many agent connections (-max-conns)`)
            return end("limit")
          }
          holdsAgentConn = true
        }
        state = "in"
        openAs = who.role
        bump(connectionsBy(who.role, "login"))
        bump(connectionsOpenBy[who.role])
        const forced = who.limits.command !== undefined ? ` (forced command ${quote(who.limits.command)})` : ""
        log(LogLevel.Info, `${who.role} ${quote(who.principal.user)} ${who.principal.fingerprint}${who.principal.comment ? ` ${quote(who.principal.comment)}` : ""} logged in from ${from}${forced}`)
        // -deadline counts from the accept, like the handshake limit.
        const left = Duration.toMillis(deadline) - (Date.now() - acceptedAt)
        // (A deadline beyond setTimeout's ~24.8 days is as good as none.)
        if (left < 2 ** 31) deadlineTimer = setTimeout(() => end("deadline"), Math.max(0, left))
      }
      socket.once("close", () => end("closed"))
      socket.on("error", () => undefined)
      // The handshake and login must finish within the limit, or the socket is dropped.
      const handshakeTimer = setTimeout(() => end("timeout"), Duration.toMillis(handshakeTimeout))

      attachers.set(socket, (c) => {
        conn = c
        c.on("error", () => undefined) // resets and protocol errors end the connection; nothing to report
        c.on("authentication", (ctx: AuthContext) => {
          if (ctx.method !== "publickey") return ctx.reject(["publickey"])
          const decision = auth.decide({
            user: ctx.username,
            algo: ctx.key.algo,
            keyData: ctx.key.data,
            hashAlgo: ctx.hashAlgo,
            ...(socket.remoteAddress !== undefined ? { address: socket.remoteAddress } : {}),
            ...(ctx.signature !== undefined && ctx.blob !== undefined
              ? { signed: { blob: ctx.blob, signature: ctx.signature, hashAlgo: ctx.hashAlgo } }
              : {})
          })
          switch (decision._tag) {
            case "KeyListed":
              // PK_OK must echo the algorithm the client named; ssh2 reports rsa-sha2-* as ssh-rsa
              // (asyncssh then fails with "Key mismatch").
              if (ctx.key.algo === "ssh-rsa" && ctx.hashAlgo !== undefined) {
                ;(ctx.key as { algo: string }).algo = ctx.hashAlgo === "sha512" ? "rsa-sha2-512" : "rsa-sha2-256"
              }
              return ctx.accept() // query phase only: the client must now sign
            case "Accept":
              login = { role: decision.role, principal: decision.principal, limits: decision.limits }
              return ctx.accept()
            case "Reject":
              bump(authFailuresBy[decision.kind])
              // Logged once, when the connection ends without a login (RefusedLogins.ts).
              refused.add({ user: ctx.username, fingerprint: decision.certifiedKey ?? fingerprint(ctx.key.data), reason: decision.reason })
              return ctx.reject(["publickey"])
          }
        })
        c.on("ready", () => {
          if (login !== undefined && state === "pending") loggedIn(login)
          else c.end()
        })
        c.on("tcpip", rejectAll)
        c.on("openssh.streamlocal", rejectAll)
        c.on("request", rejectAll)
        c.on("session", (accept, reject) => {
          if (login === undefined || openAs === undefined || state !== "in" || !sessions.take()) return reject()
          const who = login.principal
          const operator = login.role === "operator"
          const { command: forced, pty: ptyAllowed, configurations } = login.limits
          if (!operator) link ??= { fingerprint: who.fingerprint, address: socket.remoteAddress ?? "?" }
          const session = accept()
          session.once("close", () => sessions.give())
          const term: Terminal = { pty: false, columns: 80 }
          session.on("error", () => undefined)
          session.on("pty", (acc, rej, info) => {
            if (!operator || !ptyAllowed) return rej?.() // no-pty, restrict, or a certificate without permit-pty
            term.pty = true
            term.columns = info.cols
            acc?.()
          })
          session.on("window-change", (acc, _rej, info) => {
            term.columns = info.cols
            acc?.()
          })
          session.on("env", rejectAll)
          session.on("auth-agent", rejectAll)
          session.on("x11", rejectAll)
          session.on("signal", rejectAll)
          session.on("exec", (acc, rej, info) => {
            // Agent keys: `watch` only, and not with a forced command (internal-sftp or another).
            if (!operator) return forced === undefined && watch.enabled && link && isWatchCommand(info.command) ? void runConn(watching(serveWatch(acc(), info.command, link, fanout, watch, configurations))) : rej()
            if (forced === "internal-sftp") return rej()
            const ch = acc()
            ch.on("error", () => undefined) // a client gone mid-write is not our error
            // command=: the forced command runs instead of the client's (sshd's SSH_ORIGINAL_COMMAND is only logged).
            if (forced !== undefined) log(LogLevel.Info, `forced command for ${quote(who.user)} instead of ${quote(info.command)}`)
            // `events` streams until the client closes (EventsSession.ts); pings at the watch interval.
            else if (Option.isSome(operatorEvents) && isEventsCommand(info.command)) return void runConn(serveEvents(ch, operatorEvents.value, watch.pingMs))
            runExec(ch, forced ?? info.command, who, term)
          })
          session.on("shell", (acc, rej) => {
            if (!operator || forced === "internal-sftp") return rej()
            // With a forced command a shell request runs that one command, as in sshd.
            if (forced !== undefined) runExec(acc(), forced, who, term)
            else runConn(runShell(acc(), who, term))
          })
          session.on("sftp", (acc, rej) => {
            // A forced command replaces the subsystem too, unless it is internal-sftp.
            if (forced !== undefined && forced !== "internal-sftp") return rej()
            const budget = handleBudget(budgets, operator ? "operator" : "agent", who.fingerprint, handles)
            const agent = link
            const observe = agent && ((name: string, hash: string) => Effect.runSync(hostStatus.documentRead(agent, name, hash)))
            const open = sftpSessionsBy[operator ? "operator" : "agent"]
            bump(open)
            const closed = Effect.sync(() => bump(open, -1))
            // The host is known once this connection's watch named it (read at each open: the watch may come later).
            const documentOf = (name: string) => rollouts.document(name, agent?.configuration === name ? agent.host : undefined)
            runConn(operator ? Effect.ensuring(serveUpload(acc(), who, budget, budgets), closed) : Effect.ensuring(serveAgentView(acc(), who, budget, configurations, observe, documentOf), closed))
          })
          session.on("subsystem", (_acc, rej) => rej())
        })
      })
      ssh.injectSocket(socket)
    }

    tcp.on("connection", (socket: net.Socket) => {
      if (!accepting) return void socket.destroy()
      // Connection limits before any work (the handshake costs CPU): in all, and per source address.
      const source = socket.remoteAddress ?? "?"
      if (!budgets.conns.take()) {
        bump(connectionsBy("none", "limit"))
        return void socket.destroy()
      }
      if (!budgets.perSource.take(source)) {
        budgets.conns.give()
        bump(connectionsBy("none", "limit"))
        return void socket.destroy()
      }
      bump(connectionsOpenBy.pending)
      socket.setNoDelay(true)
      coalesceWrites(socket, "loop")
      sockets.add(socket)
      socket.once("close", () => {
        sockets.delete(socket)
        budgets.conns.give()
        budgets.perSource.give(source)
      })
      handleSocket(socket)
    })

    const bound = tcp.address() as net.AddressInfo
    const address = { host: opts.host, port: bound.port }
    yield* Effect.logInfo(`host key fingerprint: ${hostKey.fingerprint}`)
    yield* Effect.logInfo(`listening on ${opts.host === "" ? "*" : opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${bound.port}`)
    return { address }
  })

export const SshServerLive = (opts: SshServerOptions): Layer.Layer<SshServer, StartupError, Services | HostKey> =>
  Layer.scoped(SshServer, make(opts))
