// `deployctl web [-listen 127.0.0.1:0] [-listen-public] [-open]` (docs/web.md) and `deployctl events`:
// the operator's one connection (made as for every command) feeding the web view's server, whose
// first stdout line is the URL with the one-time token; runs until interrupted (Ctrl-C), then closes the
// server and the connection. `events` prints the registry's event lines until interrupted.
import { Effect, type Scope } from "effect"
import { spawn } from "node:child_process"
import type { UsageError } from "../domain/Errors.js"
import { execLines } from "../operator/ExecLines.js"
import type { OperatorClient } from "../operator/OperatorClient.js"
import type { SshError } from "../ssh/SshError.js"
import { makeRegistryLink } from "../web/RegistryLink.js"
import { isLoopback, parseListen } from "../web/Session.js"
import { serveWeb } from "../web/WebServer.js"
import { pages } from "../web/WebServerPages.js"
import { CtlUsage, RemoteFailed, type Sink } from "./Remote.js"

export interface WebArgs {
  readonly listen: string
  readonly listenPublic: boolean
  readonly open: boolean
}

type Connect = Effect.Effect<OperatorClient["Type"], SshError | UsageError, Scope.Scope>

const line = (out: Sink, text: string) => Effect.async<void>((resume) => void out.write(`${text}\n`, () => resume(Effect.void)))

/** The system's browser on `url`, detached; a missing opener is only a note. */
const openBrowser = (url: string, err: Sink) =>
  Effect.sync(() => {
    const opener = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open"
    try {
      const child = spawn(opener, [url], { detached: true, stdio: "ignore" })
      child.once("error", () => void err.write(`deployctl: cannot start ${opener}; open the URL yourself\n`))
      child.unref()
    } catch {
      err.write(`deployctl: cannot start ${opener}; open the URL yourself\n`)
    }
  })

export const web = (connect: Connect, io: { readonly stdout: Sink; readonly stderr: Sink }, args: WebArgs) =>
  Effect.scoped(
    Effect.gen(function* () {
      const listen = parseListen(args.listen)
      if (listen === undefined) return yield* new CtlUsage({ message: `-listen "${args.listen}": want host:port, e.g. 127.0.0.1:0` })
      if (listen.host === "0.0.0.0" || listen.host === "::") {
        return yield* new CtlUsage({ message: `-listen ${args.listen}: name one address (browsers must send it as Host), not every interface` })
      }
      if (!isLoopback(listen.host)) {
        if (!args.listenPublic) {
          return yield* new CtlUsage({ message: `-listen ${args.listen} is reachable from other machines; add -listen-public if you mean it (plain HTTP: the link's token and the session cookie cross the network unencrypted)` })
        }
        yield* line(io.stderr, `deployctl: warning: serving on ${args.listen}, reachable from other machines over plain HTTP; whoever holds the link can roll back production`)
      }
      const link = yield* makeRegistryLink({ connect, note: (text) => line(io.stderr, `deployctl web: ${text}`) })
      const served = yield* serveWeb(link, { host: listen.host, port: listen.port, pages }).pipe(
        Effect.mapError((e) => new CtlUsage({ message: e.message }))
      )
      yield* line(io.stdout, served.url)
      yield* line(io.stderr, "deployctl web: open the link above (it works once); Ctrl-C stops")
      if (args.open) yield* openBrowser(served.url, io.stderr)
      return yield* Effect.never
    })
  )

/** `deployctl events`: the registry's event lines on stdout until interrupted (or the registry ends it). */
export const events = (connect: Connect, io: { readonly stdout: Sink }) =>
  Effect.scoped(
    Effect.gen(function* () {
      const op = yield* connect
      const code = yield* execLines(op.client, "events", (l) => void io.stdout.write(`${l}\n`))
      if (code !== 0) return yield* new RemoteFailed({ code: code ?? 1 })
    })
  )
