// deploy-registry's command line, Go `flag` style as the original: -flag value, -flag=value, --flag
// value, --flag=value; booleans as -flag or -flag=true|false. Flags stop at the first non-flag argument.
// Parsed by hand: one table, and the help text is generated from it.
import { Duration } from "effect"
import { FLAG_LIMIT_DEFAULTS as L, type FlagLimits } from "./Limits.js"

export interface RegistryFlags {
  readonly addr: string
  readonly host: string
  readonly port: number
  readonly dir: string
  readonly opauth: string
  readonly srvauth: string
  readonly maxver: number
  readonly deadline: Duration.Duration
  readonly dev: boolean
  /** What clients may hold (docs/registry.md "Limits"). */
  readonly limits: FlagLimits
  /** Agent sessions: `watch` allowed (hidden -watch=false refuses it, as the Go registry), ping interval. */
  readonly watch: { readonly enabled: boolean; readonly pingMs: number }
}

export type ParsedArgs =
  | { readonly _tag: "Serve"; readonly flags: RegistryFlags }
  | { readonly _tag: "Verify"; readonly dir: string }
  | { readonly _tag: "Import"; readonly from: string; readonly dir: string }
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "Usage"; readonly message: string }

type Kind = "string" | "int" | "duration" | "bool" | "size"

interface FlagSpec {
  readonly name: string
  readonly kind: Kind
  readonly def: string
  readonly help: string
  /** Not in -h: for tests (shorter keepalives, a registry that refuses watch). */
  readonly hidden?: true
}

const DEV_DIR = ".dev-registry"

export const FLAGS: ReadonlyArray<FlagSpec> = [
  { name: "addr", kind: "string", def: "localhost:2022", help: "address to listen (host:port; port 0 picks a free one)" },
  { name: "deadline", kind: "duration", def: "30m", help: "max. lifetime of a connection (Go duration: 45s, 30m, 1h)" },
  { name: "dev", kind: "bool", def: "false", help: `development mode: data in ./${DEV_DIR}, keys generated and trusted there` },
  { name: "dir", kind: "string", def: "/var/lib/deploy-registry", help: "data directory (created, mode 0700, if missing)" },
  { name: "max-conns", kind: "int", def: String(L.maxConns), help: "max. connections at once (agents get at most 3/4; at most half the open-file limit)" },
  { name: "max-conns-per-source", kind: "int", def: String(L.maxConnsPerSource), help: "max. connections at once from one address" },
  { name: "max-handles", kind: "int", def: String(L.maxHandles), help: "max. open SFTP files and listings per connection (64 per session)" },
  { name: "max-handles-per-key", kind: "int", def: String(L.maxHandlesPerKey), help: "max. open SFTP files and listings per key, over all its connections" },
  { name: "max-sessions", kind: "int", def: String(L.maxSessions), help: "max. session channels per connection (as OpenSSH's MaxSessions)" },
  { name: "max-upload", kind: "size", def: `${L.maxUpload / 1024 ** 3}G`, help: "largest upload (bytes; suffix K, M, G or T for powers of 1024)" },
  { name: "max-uploads-per-key", kind: "int", def: String(L.maxUploadsPerKey), help: "max. uploads in progress per operator key" },
  { name: "maxver", kind: "int", def: "10", help: "max. number of versions kept per component (versions in use are always kept)" },
  { name: "opauth", kind: "string", def: "/etc/deploy-registry/operator.keys", help: "authorized_keys for operators" },
  { name: "srvauth", kind: "string", def: "/etc/deploy-registry/service.keys", help: "authorized_keys for services (user deploy-agent)" },
  { name: "watch", kind: "bool", def: "true", help: "allow agents' watch sessions", hidden: true },
  { name: "watch-ping", kind: "duration", def: "15s", help: "ping interval of watch sessions (a peer silent for 2 is dead)", hidden: true }
]

export const usage = (): string => {
  const lines = [
    "Usage: deploy-registry [flags]",
    "       deploy-registry verify -dir DIR",
    "       deploy-registry import -from GO_DIR -dir DIR",
    "",
    "Flags:"
  ]
  for (const f of FLAGS.filter((x) => !x.hidden)) {
    const type = f.kind === "bool" ? "" : f.kind === "int" ? " int" : f.kind === "duration" ? " duration" : f.kind === "size" ? " size" : " string"
    const def = f.kind === "bool" ? "" : f.kind === "string" ? ` (default "${f.def}")` : ` (default ${f.def})`
    lines.push(`  -${f.name}${type}`, `    \t${f.help}${def}`)
  }
  lines.push(
    "",
    "verify: checks every blob against its hash and every reference, prints the problems, exits 1 if any.",
    "import: reads the data directory of the original Go deploy-registry (never writes it) into DIR, which",
    "must be new or empty; host key, blobs, versions, configurations and their history are kept.",
    "Flags may also be written --flag, -flag=value or --flag=value."
  )
  return lines.join("\n") + "\n"
}

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Go's time.ParseDuration (no sign): "1h30m", "45s", "1.5h", "0"; undefined when malformed. */
export const parseGoDuration = (s: string): Duration.Duration | undefined => {
  if (s === "0") return Duration.zero
  if (!/^(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))*$/.test(s)) return undefined
  let ms = 0
  for (const m of s.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * UNITS[m[2]!]!
  return Duration.millis(ms)
}

const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

/** A byte count: digits with an optional K, M, G or T (powers of 1024); undefined when malformed or 0. */
export const parseSize = (s: string): number | undefined => {
  const m = /^(\d+)([KMGT]?)$/.exec(s)
  if (!m) return undefined
  const n = Number(m[1]) * SIZE_UNITS[m[2]!]!
  return n >= 1 && Number.isSafeInteger(n) ? n : undefined
}

/** `host:port`, `[v6]:port` or `:port` (every interface); port 0..65535 required. */
export const parseListenAddress = (addr: string): { host: string; port: number } | undefined => {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr)
  if (!m) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? m[2] ?? "", port }
}

interface RawFlag {
  readonly spec: FlagSpec
  readonly value: string
}

/** Reads flags from `args` until the first non-flag; returns the flags and the rest, or a usage message. */
const readFlags = (args: ReadonlyArray<string>, allowed: ReadonlyArray<FlagSpec>): { flags: Array<RawFlag>; rest: Array<string>; help: boolean } | string => {
  const flags: Array<RawFlag> = []
  let i = 0
  while (i < args.length) {
    const a = args[i]!
    if (a === "--") {
      i++
      break
    }
    if (!a.startsWith("-") || a === "-") break
    const body = a.replace(/^--?/, "")
    const eq = body.indexOf("=")
    const name = eq === -1 ? body : body.slice(0, eq)
    if (name === "h" || name === "help") return { flags, rest: [], help: true }
    const spec = allowed.find((f) => f.name === name)
    if (spec === undefined) return `flag provided but not defined: -${name}`
    if (eq !== -1) {
      flags.push({ spec, value: body.slice(eq + 1) })
      i++
    } else if (spec.kind === "bool") {
      flags.push({ spec, value: "true" })
      i++
    } else {
      if (i + 1 >= args.length) return `flag needs an argument: -${name}`
      flags.push({ spec, value: args[i + 1]! })
      i += 2
    }
  }
  return { flags, rest: args.slice(i), help: false }
}

const problemWith = (f: RawFlag): string | undefined => {
  const bad = `invalid value "${f.value}" for flag -${f.spec.name}`
  switch (f.spec.kind) {
    case "bool":
      return /^(true|false|1|0|t|f|TRUE|FALSE|True|False)$/.test(f.value) ? undefined : `${bad}: expected true or false`
    case "int":
      return /^\d+$/.test(f.value) && Number(f.value) >= 1 && Number(f.value) <= 1_000_000 ? undefined : `${bad}: expected a whole number ≥ 1`
    case "size":
      return parseSize(f.value) !== undefined ? undefined : `${bad}: expected a size in bytes like 1073741824 or 16G`
    case "duration": {
      const d = parseGoDuration(f.value)
      return d !== undefined && Duration.greaterThan(d, Duration.zero) ? undefined : `${bad}: expected a positive duration like 45s, 30m or 1h`
    }
    case "string":
      if (f.value === "") return `${bad}: must not be empty`
      if (f.spec.name === "addr" && parseListenAddress(f.value) === undefined) return `${bad}: expected host:port`
      return undefined
  }
}

/** `import -from GO_DIR [-dir DIR]`: -from is required, -dir defaults as for the server. */
const IMPORT_FLAGS: ReadonlyArray<FlagSpec> = [
  { name: "from", kind: "string", def: "", help: "data directory of the Go deploy-registry" },
  ...FLAGS.filter((f) => f.name === "dir")
]

const parseImport = (args: ReadonlyArray<string>): ParsedArgs => {
  const r = readFlags(args, IMPORT_FLAGS)
  if (typeof r === "string") return { _tag: "Usage", message: r }
  if (r.help) return { _tag: "Help", text: usage() }
  if (r.rest.length > 0) return { _tag: "Usage", message: `unexpected argument "${r.rest[0]}"` }
  const values = new Map(r.flags.map((f) => [f.spec.name, f.value]))
  const from = values.get("from")
  if (from === undefined) return { _tag: "Usage", message: "import needs -from GO_DIR" }
  const dir = values.get("dir") ?? FLAGS.find((f) => f.name === "dir")!.def
  if (from === "" || dir === "") return { _tag: "Usage", message: `invalid value "" for flag -${from === "" ? "from" : "dir"}: must not be empty` }
  return { _tag: "Import", from, dir }
}

export const parseArgs = (args: ReadonlyArray<string>): ParsedArgs => {
  if (args[0] === "import") return parseImport(args.slice(1))
  if (args[0] === "verify") {
    const dirSpec = FLAGS.filter((f) => f.name === "dir")
    const r = readFlags(args.slice(1), dirSpec)
    if (typeof r === "string") return { _tag: "Usage", message: r }
    if (r.help) return { _tag: "Help", text: usage() }
    if (r.rest.length > 0) return { _tag: "Usage", message: `unexpected argument "${r.rest[0]}"` }
    const dir = r.flags.at(-1)?.value ?? FLAGS.find((f) => f.name === "dir")!.def
    if (dir === "") return { _tag: "Usage", message: "invalid value \"\" for flag -dir: must not be empty" }
    return { _tag: "Verify", dir }
  }
  const r = readFlags(args, FLAGS)
  if (typeof r === "string") return { _tag: "Usage", message: r }
  if (r.help) return { _tag: "Help", text: usage() }
  if (r.rest.length > 0) return { _tag: "Usage", message: `unexpected argument "${r.rest[0]}"` }
  const values = new Map<string, string>()
  for (const f of r.flags) {
    const problem = problemWith(f)
    if (problem !== undefined) return { _tag: "Usage", message: problem }
    values.set(f.spec.name, f.value)
  }
  const dev = /^(true|1|t|TRUE|True)$/.test(values.get("dev") ?? "false")
  const get = (name: string) => values.get(name) ?? FLAGS.find((f) => f.name === name)!.def
  // Dev mode changes the defaults only; explicit flags still win.
  const dir = values.get("dir") ?? (dev ? DEV_DIR : get("dir"))
  const opauth = values.get("opauth") ?? (dev ? `${dir}/operator.keys` : get("opauth"))
  const srvauth = values.get("srvauth") ?? (dev ? `${dir}/service.keys` : get("srvauth"))
  const addr = get("addr")
  const { host, port } = parseListenAddress(addr)!
  return {
    _tag: "Serve",
    flags: {
      addr, host, port, dir, opauth, srvauth, dev,
      maxver: Number(get("maxver")),
      limits: {
        maxConns: Number(get("max-conns")),
        maxConnsPerSource: Number(get("max-conns-per-source")),
        maxSessions: Number(get("max-sessions")),
        maxHandles: Number(get("max-handles")),
        maxHandlesPerKey: Number(get("max-handles-per-key")),
        maxUpload: parseSize(get("max-upload"))!,
        maxUploadsPerKey: Number(get("max-uploads-per-key"))
      },
      deadline: parseGoDuration(get("deadline"))!,
      watch: {
        enabled: /^(true|1|t|TRUE|True)$/.test(get("watch")),
        pingMs: Duration.toMillis(parseGoDuration(get("watch-ping"))!)
      }
    }
  }
}
