// deploy-agent's flags (DESIGN.md "Agent flags"), Go style as the original: -name x, -name=x,
// --name x. Turns argv into settings or one line for stderr (exit 2).
import { Duration, Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { flag as f, type FlagSpec, parseFlags, parseGoDuration } from "../domain/Flags.js"
import { configurationNameProblem } from "../domain/Names.js"
import { parseAddresses } from "../ssh/ClientConnect.js"
import { agentKey } from "../ssh/ClientAuth.js"
import { normalizeFingerprint } from "../ssh/Fingerprint.js"
import { VERSION } from "../domain/Version.js"
import { hostNameProblem } from "../domain/Report.js"
import type { AgentSettings } from "./AgentConfig.js"
import { loadTrust } from "./TrustPolicy.js"

export const flags: ReadonlyArray<FlagSpec> = [
  { ...f("addr", "registry address (host:port; replicas: host:port,host:port,…, tried from a random one)"), default: "localhost:2022" },
  f("name", "configuration to track (required)"),
  f("key", "ssh private key to use (default: the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa, else ./id_ecdsa)"),
  f("cert", "OpenSSH certificate for the key (default: <key>-cert.pub when it exists)"),
  f("fp", "registry server key fingerprint, SHA256:... (required)"),
  { ...f("dir", "directory to store downloaded and unpacked files"), default: "." },
  { ...f("script", 'script to run on deploys ("" for none)'), default: "./deploy.sh" },
  f("check", "health check run after the deploy script; a failure switches back to the previous configuration"),
  { ...f("check-timeout", "time the health check has to exit 0 (Go duration)"), default: "60s" },
  f("retry-failed", "retry a configuration that failed and was switched back after this long (Go duration; default: only when the configuration changes or on SIGHUP)"),
  { ...f("state", "file to save state to (relative to the working directory)"), default: "<dir>/state.json" },
  f("metrics-file", "write metrics for node_exporter's textfile collector to this file after every attempt (docs/metrics.md)"),
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
  f("trust", "OpenSSH allowed_signers file: deploy only states signed by these keys (namespace deploy-tools)"),
  f("trust-min", "with -trust: distinct trusted signers a state needs (default 1)"),
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

/** -script (and -check) must be runnable now, not after the first download (found then, it was retried forever). */
export const scriptProblem = (script: string, searchPath: string, flag: "script" | "check" = "script"): string | undefined => {
  if (script === "") return undefined
  const none = flag === "script" ? ' (use -script "" to run no script)' : ""
  if (script.includes("/")) {
    const p = executable(script)
    return p === undefined ? undefined : `-${flag}: ${script} ${p}${none}`
  }
  const found = searchPath.split(":").some((d) => d !== "" && executable(path.join(d, script)) === undefined)
  return found ? undefined : `-${flag}: ${script} is not an executable in PATH (give a path, e.g. ./${script}${flag === "script" ? ', or -script "" for none' : ""})`
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

/** The state file (or -metrics-file) is replaced by rename, so its directory must exist and be writable. */
export const stateProblem = (state: string, flag = "-state"): string | undefined => {
  const parent = path.dirname(state)
  try {
    fs.accessSync(parent, fs.constants.W_OK | fs.constants.X_OK)
  } catch (e) {
    return `${flag}: directory ${parent} is not writable (${code(e)})`
  }
  try {
    if (fs.statSync(state).isDirectory()) return `${flag}: ${state} is a directory, expected a file`
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
  const addresses = parseAddresses(get("addr"))
  if (addresses === undefined) {
    return Either.left(`-addr: malformed address "${get("addr")}", expected host:port${get("addr").includes(",") ? " or host:port,host:port,…" : ""}`)
  }
  const address = addresses[0]!
  const poll = parseGoDuration(get("poll"))
  if (poll === undefined || !Duration.greaterThan(poll, Duration.zero)) return Either.left(`-poll: invalid duration "${get("poll")}" (e.g. 30s, 1m, 500ms)`)
  const jitter = parseGoDuration(get("jitter"))
  if (jitter === undefined) return Either.left(`-jitter: invalid duration "${get("jitter")}" (e.g. 5s, 0)`)
  const checkTimeout = parseGoDuration(get("check-timeout"))
  if (checkTimeout === undefined || !Duration.greaterThan(checkTimeout, Duration.zero)) return Either.left(`-check-timeout: invalid duration "${get("check-timeout")}" (e.g. 60s, 2m)`)
  const retryFailed = raw.strings.has("retry-failed") ? parseGoDuration(get("retry-failed")) : Duration.zero
  if (retryFailed === undefined) return Either.left(`-retry-failed: invalid duration "${get("retry-failed")}" (e.g. 10m, 1h)`)
  const hostName = raw.strings.get("host") ?? os.hostname()
  const hostProblem = hostNameProblem(hostName)
  if (hostProblem !== undefined) return Either.left(`-host: ${hostProblem}`)
  const ping = parseGoDuration(get("ping"))
  if (ping === undefined || !Duration.greaterThan(ping, Duration.zero)) return Either.left(`-ping: invalid duration "${get("ping")}" (e.g. 10s)`)
  const reconnect = parseGoDuration(get("reconnect"))
  if (reconnect === undefined) return Either.left(`-reconnect: invalid duration "${get("reconnect")}" (e.g. 10s, 0)`)
  const key = agentKey({ keyFlag: raw.strings.get("key"), certFlag: raw.strings.get("cert"), cwd })
  if ("error" in key) return Either.left(key.error)
  const script = get("script")
  const dir = path.resolve(cwd, get("dir"))
  // Two agents in one working directory must not share a state file: by default it lives in -dir.
  const state = raw.strings.has("state") ? path.resolve(cwd, get("state")) : path.join(dir, "state.json")
  const metricsFile = raw.strings.has("metrics-file") ? path.resolve(cwd, get("metrics-file")) : undefined
  const scriptPath = script === "" || !script.includes("/") ? script : path.resolve(cwd, script)
  const check = get("check")
  const checkPath = check === "" || !check.includes("/") ? check : path.resolve(cwd, check)
  const problem =
    scriptProblem(scriptPath, process.env.PATH ?? "") ?? scriptProblem(checkPath, process.env.PATH ?? "", "check") ?? dirProblem(dir) ?? stateProblem(state) ??
    (metricsFile !== undefined ? stateProblem(metricsFile, "-metrics-file") : undefined)
  if (problem !== undefined) return Either.left(problem)
  if (raw.strings.has("trust-min") && !raw.strings.has("trust")) return Either.left("-trust-min needs -trust FILE")
  const trust = raw.strings.has("trust") ? loadTrust(path.resolve(cwd, get("trust")), raw.strings.get("trust-min")) : undefined
  if (typeof trust === "string") return Either.left(trust)
  return Either.right({
    _tag: "Run",
    once: raw.bools.has("once"),
    addr: get("addr"),
    settings: {
      host: address.host,
      port: address.port,
      addresses,
      name,
      privateKey: key.privateKey,
      ...(key.certificate !== undefined ? { certificate: key.certificate.key } : {}),
      keyDescription: key.description,
      fingerprint,
      dir,
      // A bare name is looked up in PATH like a shell would; anything with a slash is a path.
      script: scriptPath,
      state,
      check: checkPath,
      checkTimeout,
      retryFailed: Duration.greaterThan(retryFailed, Duration.zero) ? retryFailed : undefined,
      poll,
      jitter,
      hostName,
      ping,
      reconnect,
      cleanOld: raw.bools.has("cleanold"),
      keepSuid: raw.bools.has("keep-suid"),
      verbose: raw.bools.has("v"),
      killGrace: Duration.seconds(5),
      ...(trust !== undefined ? { trust } : {}),
      ...(metricsFile !== undefined ? { metricsFile } : {})
    }
  })
}
