// deploy-agent's flags (DESIGN.md "Agent flags"), Go style as the original: -name x, -name=x,
// --name x. Turns argv into settings or one line for stderr (exit 2).
import { Duration, Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type FlagSpec, parseFlags } from "../domain/Commands.js"
import { configurationNameProblem } from "../domain/Names.js"
import { parseAddress } from "../ssh/Connection.js"
import { agentKey } from "../ssh/ClientAuth.js"
import { normalizeFingerprint } from "../ssh/Fingerprint.js"
import { VERSION } from "../domain/Version.js"
import { hostNameProblem } from "../domain/Report.js"
import type { AgentSettings } from "./AgentConfig.js"

const f = (name: string, description: string, kind: FlagSpec["kind"] = "string"): FlagSpec => ({ name, kind, description })

export const flags: ReadonlyArray<FlagSpec & { readonly default?: string; readonly hidden?: true }> = [
  { ...f("addr", "registry address (host:port)"), default: "localhost:2022" },
  f("name", "configuration to track (required)"),
  f("key", "ssh private key to use (default: the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa, else ./id_ecdsa)"),
  f("cert", "OpenSSH certificate for the key (default: <key>-cert.pub when it exists)"),
  f("fp", "registry server key fingerprint, SHA256:... (required)"),
  { ...f("dir", "directory to store downloaded and unpacked files"), default: "." },
  { ...f("script", 'script to run on deploys ("" for none)'), default: "./deploy.sh" },
  { ...f("state", "file to save state to (relative to the working directory)"), default: "<dir>/state.json" },
  { ...f("poll", "registry poll interval (Go duration; plus up to 5s jitter)"), default: "30s" },
  // For tests, which wait on polls: the random delay before the first poll and after each one. Not in -h.
  { ...f("jitter", "largest random delay added to each poll (Go duration)"), default: "5s", hidden: true },
  { ...f("host", "this machine's name in the registry's status (default: the system host name)") },
  // Agent sessions (Session.ts): keepalive interval, and the spread of reconnects after a lost session. Not in -h.
  { ...f("ping", "watch session keepalive interval (Go duration; the registry is taken for dead after 2)"), default: "15s", hidden: true },
  // 30 s: 5,000 agents losing a restarting registry come back at ~170 handshakes/s, leaving it room for operators.
  { ...f("reconnect", "largest random delay before reconnecting a lost watch session (Go duration)"), default: "30s", hidden: true },
  f("cleanold", "remove other unpacked trees after a successful switch", "bool"),
  f("keep-suid", "keep setuid/setgid bits of unpacked files", "bool"),
  f("once", "run one cycle and exit: 0 when deployed, 1 when it failed", "bool"),
  f("v", "be more chatty about what's happening", "bool"),
  f("version", "print the version and exit", "bool")
]

export const usage = (): string =>
  `deploy-agent ${VERSION}\nUsage of deploy-agent:\n` +
  flags
    .filter((s) => !s.hidden)
    .map((s) => `  -${s.name}${s.kind === "bool" ? "" : " string"}\n\t${s.description}${s.default !== undefined ? ` (default "${s.default}")` : ""}`)
    .join("\n") +
  "\n"

/** Go's time.ParseDuration subset: `300ms`, `30s`, `1m30s`, `1.5h`. */
export const parseGoDuration = (s: string): number | undefined => {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
  if (s === "0") return 0
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy
  let total = 0
  let pos = 0
  let m: RegExpExecArray | null
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * units[m[2]!]!
    pos = re.lastIndex
  }
  return pos === s.length && s.length > 0 ? total : undefined
}

export type Startup = { readonly _tag: "Help" } | { readonly _tag: "Version" } | { readonly _tag: "Run"; readonly settings: AgentSettings; readonly once: boolean; readonly addr: string }

const code = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message

const executable = (file: string): string | undefined => {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (e) {
    return code(e) === "ENOENT" ? "does not exist" : `cannot be read (${code(e)})`
  }
  if (!st.isFile()) return "is not a regular file"
  try {
    fs.accessSync(file, fs.constants.X_OK)
  } catch {
    return "is not executable (chmod +x it)"
  }
  return undefined
}

/** -script must be runnable now, not after the first download (found then, it was retried forever). */
export const scriptProblem = (script: string, searchPath: string): string | undefined => {
  if (script === "") return undefined
  if (script.includes("/")) {
    const p = executable(script)
    return p === undefined ? undefined : `-script: ${script} ${p} (use -script "" to run no script)`
  }
  const found = searchPath.split(":").some((d) => d !== "" && executable(path.join(d, script)) === undefined)
  return found ? undefined : `-script: ${script} is not an executable in PATH (give a path, e.g. ./${script}, or -script "" for none)`
}

const writableDir = (dir: string): string | undefined => {
  try {
    fs.mkdirSync(dir, { recursive: true })
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK)
    return undefined
  } catch (e) {
    return code(e)
  }
}

/** -dir is created when missing and must be writable (cache/, unpacked/ and tmp/ go there). */
export const dirProblem = (dir: string): string | undefined => {
  const p = writableDir(dir)
  return p === undefined ? undefined : `-dir: ${dir} is not a writable directory (${p})`
}

/** The state file is replaced by rename, so its directory must exist and be writable. */
export const stateProblem = (state: string): string | undefined => {
  const parent = path.dirname(state)
  try {
    fs.accessSync(parent, fs.constants.W_OK | fs.constants.X_OK)
  } catch (e) {
    return `-state: directory ${parent} is not writable (${code(e)})`
  }
  try {
    if (fs.statSync(state).isDirectory()) return `-state: ${state} is a directory, expected a file`
  } catch {
    // missing: written at the first deploy
  }
  return undefined
}

/** Flags to settings; every problem is one line for stderr (exit 2). */
export const startup = (argv: ReadonlyArray<string>, cwd: string): Either.Either<Startup, string> => {
  const parsed = parseFlags(flags, argv)
  if (Either.isLeft(parsed)) return Either.left(parsed.left.message)
  const raw = parsed.right
  if (raw.help) return Either.right({ _tag: "Help" })
  if (raw.bools.has("version")) return Either.right({ _tag: "Version" })
  const get = (n: string) => raw.strings.get(n) ?? flags.find((s) => s.name === n)?.default ?? ""
  const name = get("name")
  if (name === "") return Either.left("-name is required")
  const nameProblem = configurationNameProblem(name)
  if (nameProblem) return Either.left(`-name: ${nameProblem}`)
  if (get("fp") === "") return Either.left("-fp is required (the registry's host key fingerprint, SHA256:...)")
  const fingerprint = normalizeFingerprint(get("fp"))
  if (fingerprint === undefined) return Either.left(`-fp: malformed fingerprint "${get("fp")}", expected SHA256: and 43 base64 characters`)
  const address = parseAddress(get("addr"))
  if (address === undefined) return Either.left(`-addr: malformed address "${get("addr")}", expected host:port`)
  const pollMs = parseGoDuration(get("poll"))
  if (pollMs === undefined || pollMs <= 0) return Either.left(`-poll: invalid duration "${get("poll")}" (e.g. 30s, 1m, 500ms)`)
  const jitterMs = parseGoDuration(get("jitter"))
  if (jitterMs === undefined) return Either.left(`-jitter: invalid duration "${get("jitter")}" (e.g. 5s, 0)`)
  const hostName = raw.strings.get("host") ?? os.hostname()
  const hostProblem = hostNameProblem(hostName)
  if (hostProblem !== undefined) return Either.left(`-host: ${hostProblem}`)
  const pingMs = parseGoDuration(get("ping"))
  if (pingMs === undefined || pingMs <= 0) return Either.left(`-ping: invalid duration "${get("ping")}" (e.g. 10s)`)
  const reconnectMs = parseGoDuration(get("reconnect"))
  if (reconnectMs === undefined) return Either.left(`-reconnect: invalid duration "${get("reconnect")}" (e.g. 10s, 0)`)
  const key = agentKey({ keyFlag: raw.strings.get("key"), certFlag: raw.strings.get("cert"), cwd })
  if ("error" in key) return Either.left(key.error)
  const script = get("script")
  const dir = path.resolve(cwd, get("dir"))
  // Two agents in one working directory must not share a state file: by default it lives in -dir.
  const state = raw.strings.has("state") ? path.resolve(cwd, get("state")) : path.join(dir, "state.json")
  const scriptPath = script === "" || !script.includes("/") ? script : path.resolve(cwd, script)
  const problem = scriptProblem(scriptPath, process.env.PATH ?? "") ?? dirProblem(dir) ?? stateProblem(state)
  if (problem !== undefined) return Either.left(problem)
  return Either.right({
    _tag: "Run",
    once: raw.bools.has("once"),
    addr: get("addr"),
    settings: {
      host: address.host,
      port: address.port,
      name,
      privateKey: key.privateKey,
      ...(key.certificate !== undefined ? { certificate: key.certificate.key } : {}),
      keyDescription: key.description,
      fingerprint,
      dir,
      // A bare name is looked up in PATH like a shell would; anything with a slash is a path.
      script: scriptPath,
      state,
      poll: Duration.millis(pollMs),
      jitter: Duration.millis(jitterMs),
      hostName,
      ping: Duration.millis(pingMs),
      reconnect: Duration.millis(reconnectMs),
      cleanOld: raw.bools.has("cleanold"),
      keepSuid: raw.bools.has("keep-suid"),
      verbose: raw.bools.has("v"),
      killGrace: Duration.seconds(5)
    }
  })
}
