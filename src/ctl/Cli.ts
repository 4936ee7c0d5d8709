// deployctl: the command line (Argv.ts) turned into one catalogue command (src/domain/Commands.ts)
// for the Remote service, our own help in the style of Go's flag package, and exit statuses. Every
// error of this layer is one line `deployctl: …` (or {"error": …} on stderr with -json). @effect/cli
// is used only to write shell completion scripts from the same catalogue (Completions.ts, loaded for
// --completions only).
import { Config, Console, Effect, Option } from "effect"
import * as os from "node:os"
import { catalogue, type CommandName, type CommandSpec, flagHelp, validate } from "../domain/Commands.js"
import type { FlagSpec } from "../domain/Flags.js"
import { UsageError } from "../domain/Errors.js"
import { VERSION as PROGRAM_VERSION } from "../domain/Version.js"
import { type ArgvSpec, parseArgv, wantsJson } from "./Argv.js"
import { configPath, loadConfig, resolveGlobals } from "./ConfigFile.js"
import { type Globals, type Io, Remote, type RemoteError } from "./Remote.js"

export const VERSION = PROGRAM_VERSION

export const globalFlags: ReadonlyArray<FlagSpec> = [
  { name: "addr", kind: "string", description: "registry address host:port; replicas: host:port,host:port,… tried in order (default $DEPLOYCTL_ADDR)" },
  {
    name: "fp",
    kind: "string",
    description: "registry host key fingerprint, SHA256:... as deploy-registry logs it (default $DEPLOYCTL_FINGERPRINT); without it ~/.ssh/known_hosts decides"
  },
  {
    name: "key",
    kind: "string",
    description: "ssh private key file (default $DEPLOYCTL_KEY); without it ssh-agent ($SSH_AUTH_SOCK), else ~/.ssh/id_ed25519, id_ecdsa, id_rsa"
  },
  { name: "cert", kind: "string", description: "OpenSSH certificate for the key (default <key>-cert.pub when it exists)" },
  { name: "r", kind: "string", description: "registry NAME from ~/.config/deploy-tools/deployctl.toml (its addr, fingerprint and key)" }
]

const fileFlag: FlagSpec = { name: "file", kind: "string", description: "the .tar.gz to upload (checked, hashed and uploaded in one pass)" }
const jsonFlag: FlagSpec = { name: "json", kind: "bool", description: "print the added version as JSON" }
const waitFlag: FlagSpec = {
  name: "wait",
  kind: "bool",
  description: "with -name: wait until every connected host runs the current hash (exit 0) or one fails (exit 1)"
}

const signFlag: FlagSpec = { name: "sign", kind: "bool", description: "sign the new state (deployctl sign) with -key or the ssh-agent key" }
/** The commands that make a state and take -sign. */
const SIGNABLE: ReadonlySet<string> = new Set(["changeconf", "bumpconf", "replaceconf", "rollback", "rollout"])

/** deployctl's own commands, beside the catalogue's. */
export const signSpec = {
  name: "sign" as CommandName,
  summary: "sign the configuration's current state, or a rollout's target (SSHSIG, namespace deploy-tools), and attach the signature",
  flags: [
    { name: "name", kind: "string", description: "configuration name" },
    { name: "hash", kind: "string", description: "sign this state (the current one, or the target of the rollout in progress) instead of the current one" },
    { name: "print-message", kind: "bool", description: "only print the text to sign (for ssh-keygen -Y sign -n deploy-tools or a hardware key)" },
    { name: "signature", kind: "string", description: "attach this signature file made elsewhere instead of signing" },
    { name: "message", kind: "string", description: "the text -signature signs (default: the signature file without .sig)" }
  ]
} satisfies CommandSpec

/** `deployctl web` (src/ctl/Web.ts, docs/web.md). */
export const webSpec = {
  name: "web" as CommandName,
  summary: "serve the fleet in a browser: a local web view over this connection (prints the URL to open)",
  flags: [
    { name: "listen", kind: "string", description: "address to serve on (default 127.0.0.1:0, a free port)" },
    { name: "listen-public", kind: "bool", description: "allow a -listen address other machines can reach (plain HTTP)" },
    { name: "open", kind: "bool", description: "also open the URL in the system's browser" }
  ]
} satisfies CommandSpec

/** The flags deployctl takes for a command: the catalogue's, except addver's -hash is -file (and it has -json). */
export const ctlFlags = (spec: CommandSpec): ReadonlyArray<FlagSpec> =>
  spec.name === "addver" ? [...spec.flags.filter((f) => f.name !== "hash"), fileFlag, jsonFlag]
    : spec.name === "status" ? [...spec.flags, waitFlag]
    : SIGNABLE.has(spec.name) ? [...spec.flags, signFlag] : spec.flags

/** A command's one-line description in deployctl (addver uploads too). */
export const summaryOf = (spec: CommandSpec) => (spec.name === "addver" ? "upload a .tar.gz and add it as a new component version" : spec.summary)

export const argvSpec: ArgvSpec = {
  globals: globalFlags,
  commands: new Map([
    ...catalogue.map((c) => [c.name as string, ctlFlags(c)] as const),
    [signSpec.name, signSpec.flags] as const,
    [webSpec.name, webSpec.flags] as const
  ])
}

// Our own help, from the catalogue, in the style of Go's flag package (the original tool's):
// @effect/cli's prints each option's type as a paragraph ("A user-defined piece of text.") and
// a subcommand's usage without the program name, and it cannot be told otherwise.
export const topHelp = (): string => {
  const width = Math.max(...catalogue.map((c) => c.name.length)) + 3
  return (
    `deployctl ${VERSION}: manage a deploy-registry over SSH, one subcommand per registry command\n\n` +
    `Usage: deployctl [-r name] [-addr host:port] [-fp SHA256:...] [-key file] <command> [flags]\n\n` +
    `Global flags (before or after the command):\n${globalFlags.map(flagHelp).join("")}\n` +
    `Commands:\n${[...catalogue, signSpec, webSpec].map((c) => `  ${c.name.padEnd(width)}${summaryOf(c)}\n`).join("")}\n` +
    `Run deployctl <command> -h (or deployctl help <command>) for a command's flags. Flags are written -name x,\n` +
    `-name=x or --name x, before or after the command. -addr, -fp and -key fall back to $DEPLOYCTL_ADDR,\n` +
    `$DEPLOYCTL_FINGERPRINT, $DEPLOYCTL_KEY, then to the default registry of ~/.config/deploy-tools/deployctl.toml.\n` +
    `Also: deployctl --version, deployctl --completions sh|bash|fish|zsh.\n`
  )
}

export const commandHelp = (spec: CommandSpec): string => {
  const flags = ctlFlags(spec)
  return (
    `Usage: deployctl [global flags] ${spec.name}${flags.length > 0 ? " [flags]" : ""}\n\n${summaryOf(spec)}\n` +
    (flags.length > 0 ? `\nFlags:\n${flags.map(flagHelp).join("")}` : "") +
    `\nGlobal flags: ${globalFlags.map((f) => `-${f.name}`).join(", ")} (see deployctl -h)\n`
  )
}

const ansi = /\x1b\[[0-9;]*m/g

/**
 * Effect's Console, minus colour codes on streams that are not terminals (or with NO_COLOR):
 * @effect/cli colours its help and errors unconditionally.
 */
export const plainConsole = (colour: { readonly stdout: boolean; readonly stderr: boolean }) =>
  Console.consoleWith((base) => {
    const plain = (keep: boolean) => (args: ReadonlyArray<unknown>) => (keep ? args : args.map((a) => (typeof a === "string" ? a.replace(ansi, "") : a)))
    const out = plain(colour.stdout)
    const err = plain(colour.stderr)
    return Effect.succeed<Console.Console>({
      ...base,
      log: (...a) => base.log(...out(a)),
      error: (...a) => base.error(...err(a)),
      unsafe: { ...base.unsafe, log: (...a) => base.unsafe.log(...out(a)), error: (...a) => base.unsafe.error(...err(a)) }
    })
  })

/** The environment deployctl reads, through Effect's Config (tests provide their own). */
const env = Config.all({
  addr: Config.option(Config.string("DEPLOYCTL_ADDR")),
  fp: Config.option(Config.string("DEPLOYCTL_FINGERPRINT")),
  key: Config.option(Config.string("DEPLOYCTL_KEY")),
  xdg: Config.option(Config.string("XDG_CONFIG_HOME")),
  home: Config.string("HOME").pipe(Config.withDefault(os.homedir()))
}).pipe(Effect.orDie)

/** -addr/-fp/-key after -r, the environment and the configuration file (ConfigFile.ts). */
const globalsOf = (flags: ReadonlyMap<string, string>) =>
  Effect.gen(function* () {
    const e = yield* env
    const file = configPath({ xdgConfigHome: Option.getOrUndefined(e.xdg), home: e.home })
    const config = yield* loadConfig(file)
    const r = yield* resolveGlobals({
      flags,
      env: { addr: Option.getOrUndefined(e.addr), fp: Option.getOrUndefined(e.fp), key: Option.getOrUndefined(e.key) },
      file,
      config
    })
    const globals: Globals = {
      addr: Option.fromNullable(r.addr),
      fp: Option.fromNullable(r.fp),
      key: Option.fromNullable(r.key),
      cert: Option.fromNullable(flags.get("cert"))
    }
    return globals
  })

/** Runs the parsed command line. */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<void, RemoteError, Remote> =>
  Effect.gen(function* () {
    const parsed = yield* parseArgv(argvSpec, argv)
    switch (parsed._tag) {
      case "Help": {
        const spec = [...catalogue, signSpec, webSpec].find((c) => c.name === parsed.command)
        return yield* Console.log((spec === undefined ? topHelp() : commandHelp(spec)).trimEnd())
      }
      case "Version":
        return yield* Console.log(`deployctl ${VERSION}`)
      case "Completions":
        return yield* Effect.flatMap(Effect.promise(() => import("./Completions.js")), (m) => m.completions(parsed.shell)).pipe(
          Effect.catchAll((e) => new UsageError({ message: `--completions ${parsed.shell}: ${String(e)}` }))
        )
      case "Run": {
        const globals = yield* globalsOf(parsed.globals)
        const remote = yield* Remote
        const raw = parsed.flags
        if (parsed.command === "addver") {
          const get = (n: string) => raw.strings.get(n) ?? ""
          return yield* remote.addver(globals, { name: get("name"), version: get("version"), file: get("file"), json: raw.bools.has("json") })
        }
        if (parsed.command === signSpec.name) {
          const name = raw.strings.get("name") ?? ""
          if (name === "") return yield* new UsageError({ message: "name should be set" })
          const signature = raw.strings.get("signature")
          const message = raw.strings.get("message")
          const hash = raw.strings.get("hash")
          return yield* remote.sign(globals, {
            name, printMessage: raw.bools.has("print-message"), ...(hash !== undefined ? { hash } : {}),
            ...(signature !== undefined ? { signatureFile: signature } : {}), ...(message !== undefined ? { messageFile: message } : {})
          })
        }
        if (parsed.command === webSpec.name) {
          return yield* remote.web(globals, { listen: raw.strings.get("listen") ?? "127.0.0.1:0", listenPublic: raw.bools.has("listen-public"), open: raw.bools.has("open") })
        }
        if (parsed.command === "events") return yield* remote.events(globals)
        if (parsed.command === "status" && raw.bools.has("wait")) {
          const bools = new Set([...raw.bools].filter((b) => b !== "wait"))
          const command = yield* validate("status", { ...raw, bools })
          if (command._tag !== "status" || command.name === undefined) return yield* new UsageError({ message: "status -wait needs -name" })
          return yield* remote.statusWait(globals, command.name, command.json)
        }
        const command = yield* validate(parsed.command as CommandName, raw)
        if (raw.bools.has("sign") && "name" in command && command.name !== undefined) {
          // A rollout signs its target (a pending state), once it has started.
          if (command._tag === "rollout" && command.action !== "start") return yield* new UsageError({ message: "-sign only when starting a rollout" })
          return yield* remote.sign(globals, { name: command.name, ...(command._tag === "rollout" ? { rolloutTarget: true } : {}) }, command)
        }
        return yield* remote.run(globals, command)
      }
    }
  })

/**
 * The whole program on `argv` (without node and script): its exit status. 0 ok; 1 the registry
 * said no (its output already passed through) or the connection, host key, key or upload failed
 * (one line on `io.stderr`); 2 a usage error. With -json, deployctl's own errors are
 * {"error": "…"} lines on stderr.
 */
export const main = (argv: ReadonlyArray<string>, io: Io): Effect.Effect<number, never, Remote> => {
  const json = wantsJson(argv)
  const line = (s: string) =>
    Effect.sync(() => void io.stderr.write(json ? `${JSON.stringify({ error: s })}\n` : `deployctl: ${s}\n`))
  return run(argv).pipe(
    Effect.as(0),
    Effect.catchAll((e): Effect.Effect<number> => {
      switch (e._tag) {
        case "RemoteFailed":
          return Effect.succeed(e.code) // the registry's output was passed through
        case "UsageError":
        case "CtlUsage":
          return Effect.as(line(e.message), 2)
        case "SshError":
        case "InvalidArchive":
        case "FileError":
        case "VersionTaken":
          return Effect.as(line(e.message), 1)
      }
    }),
    Effect.catchAllDefect((d) => Effect.as(line(`internal error: ${d instanceof Error ? d.message : String(d)}`), 1))
  )
}
