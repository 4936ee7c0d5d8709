// deploy-registry's command line, Go `flag` style as the original (the one parser, src/domain/Flags.ts):
// -flag value, -flag=value, --flag value, --flag=value; booleans as -flag or -flag=true|false. Flags stop
// at the first non-flag argument. One table; the help text is generated from it.
import { Duration, Either } from "effect"
import { type FlagProblem, type FlagSpec, goMessage, parseGoDuration, scanFlags } from "../domain/Flags.js"
import { FLAG_LIMIT_DEFAULTS as L, type FlagLimits } from "./Limits.js"

export interface RegistryFlags {
  readonly addr: string
  readonly host: string
  readonly port: number
  readonly dir: string
  readonly opauth: string
  readonly srvauth: string
  /** -hostkey: the host key file every replica shares; undefined: `<dir>/host_key`, generated when missing. */
  readonly hostkey?: string
  readonly maxver: number
  /** -db (else $DATABASE_URL): PostgreSQL holding metadata and blobs; undefined: SQLite in `dir`. */
  readonly db?: string
  /** -cache-max: bytes of the blob cache in `dir`/cache (with -db). */
  readonly cacheMax: number
  readonly deadline: Duration.Duration
  readonly dev: boolean
  /** -metrics: where /metrics listens (docs/metrics.md); off when undefined. */
  readonly metrics?: { readonly host: string; readonly port: number }
  /** What clients may hold (docs/registry.md "Limits"). */
  readonly limits: FlagLimits
  /** Agent sessions: `watch` allowed (hidden -watch=false refuses it, as the Go registry), ping interval. */
  readonly watch: { readonly enabled: boolean; readonly pingMs: number }
  /** How often the rollout driver looks at live rollouts without a report (hidden -rollout-tick). */
  readonly rolloutTickMs: number
}

export type ParsedArgs =
  | { readonly _tag: "Serve"; readonly flags: RegistryFlags }
  | { readonly _tag: "Verify"; readonly dir: string; readonly db?: string }
  | { readonly _tag: "Import"; readonly from: string; readonly dir: string }
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "Usage"; readonly message: string }

const DEV_DIR = ".dev-registry"

export const FLAGS: ReadonlyArray<FlagSpec & { readonly default: string }> = [
  { name: "addr", kind: "string", default: "localhost:2022", description: "address to listen (host:port; port 0 picks a free one)" },
  { name: "cache-max", kind: "size", default: "10G", description: "with -db: largest size of the blob cache in -dir/cache (size; suffix K, M, G or T)" },
  { name: "db", kind: "string", default: "", description: "PostgreSQL URL (postgres://user@host:5432/db) holding metadata and blobs, for replicas (docs/scale-out.md); default $DATABASE_URL, else SQLite in -dir" },
  { name: "deadline", kind: "duration", default: "30m", description: "max. lifetime of a connection (Go duration: 45s, 30m, 1h)" },
  { name: "dev", kind: "bool", default: "false", description: `development mode: data in ./${DEV_DIR}, keys generated and trusted there` },
  { name: "dir", kind: "string", default: "/var/lib/deploy-registry", description: "data directory (created, mode 0700, if missing)" },
  { name: "hostkey", kind: "string", default: "", description: "host key file, which must exist (default <dir>/host_key, generated on first start); replicas share one so agents' -fp holds" },
  { name: "max-conns", kind: "int", default: String(L.maxConns), description: "max. connections at once (agents get at most 3/4; at most half the open-file limit)" },
  { name: "max-conns-per-source", kind: "int", default: String(L.maxConnsPerSource), description: "max. connections at once from one address" },
  { name: "max-handles", kind: "int", default: String(L.maxHandles), description: "max. open SFTP files and listings per connection (64 per session)" },
  { name: "max-handles-per-key", kind: "int", default: String(L.maxHandlesPerKey), description: "max. open SFTP files and listings per key, over all its connections" },
  { name: "max-sessions", kind: "int", default: String(L.maxSessions), description: "max. session channels per connection (as OpenSSH's MaxSessions)" },
  { name: "max-upload", kind: "size", default: `${L.maxUpload / 1024 ** 3}G`, description: "largest upload (bytes; suffix K, M, G or T for powers of 1024)" },
  { name: "max-uploads-per-key", kind: "int", default: String(L.maxUploadsPerKey), description: "max. uploads in progress per operator key" },
  { name: "maxver", kind: "int", default: "10", description: "max. number of versions kept per component (versions in use are always kept)" },
  { name: "metrics", kind: "string", default: "", description: "serve Prometheus metrics on host:port at /metrics (off by default; loopback only unless -metrics-public)" },
  { name: "metrics-public", kind: "bool", default: "false", description: "allow -metrics on an address other than loopback" },
  { name: "opauth", kind: "string", default: "/etc/deploy-registry/operator.keys", description: "authorized_keys for operators" },
  { name: "srvauth", kind: "string", default: "/etc/deploy-registry/service.keys", description: "authorized_keys for services (user deploy-agent)" },
  // Not in -h: for tests (a registry that refuses watch as the Go one does; shorter keepalives).
  { name: "watch", kind: "bool", default: "true", description: "allow agents' watch sessions", hidden: true },
  { name: "watch-ping", kind: "duration", default: "15s", description: "ping interval of watch sessions (a peer silent for 2 is dead)", hidden: true },
  { name: "rollout-tick", kind: "duration", default: "1s", description: "how often the rollout driver looks at live rollouts", hidden: true }
]

export const usage = (): string => {
  const lines = [
    "Usage: deploy-registry [flags]",
    "       deploy-registry verify -dir DIR | -db URL",
    "       deploy-registry import -from GO_DIR -dir DIR",
    "",
    "Flags:"
  ]
  for (const f of FLAGS.filter((x) => !x.hidden)) {
    const type = f.kind === "bool" ? "" : f.kind === "int" ? " int" : f.kind === "duration" ? " duration" : f.kind === "size" ? " size" : " string"
    const def = f.kind === "bool" || f.default === "" ? "" : f.kind === "string" ? ` (default "${f.default}")` : ` (default ${f.default})`
    lines.push(`  -${f.name}${type}`, `    \t${f.description}${def}`)
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

/** A PostgreSQL connection URL (the only -db there is). */
export const isPostgresUrl = (s: string): boolean => /^postgres(ql)?:\/\/\S+$/.test(s)

/** -db, else $DATABASE_URL; a usage message when the variable holds something else. */
const database = (flag: string | undefined, env: Environment): { db?: string } | string => {
  const db = flag ?? (env.DATABASE_URL === "" ? undefined : env.DATABASE_URL)
  if (db === undefined) return {}
  return isPostgresUrl(db) ? { db } : "invalid value in $DATABASE_URL: expected a postgres:// or postgresql:// URL"
}

/** The environment the flags read: DATABASE_URL stands in for -db. */
export interface Environment {
  readonly DATABASE_URL?: string | undefined
}

/** 127.0.0.0/8, ::1 and localhost; "" (every interface) is not. */
export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

interface RawFlag {
  readonly spec: FlagSpec
  readonly value: string
}

/** A flag problem as Go words it, but a bad boolean as the other bad values. */
const problemText = (p: FlagProblem): string =>
  p._tag === "BadBool" ? `invalid value "${p.value}" for flag -${p.name}: expected true or false` : goMessage(p)

/** Reads flags from `args` until the first non-flag; the flags and the rest, or a usage message. Stops at -h. */
const readFlags = (args: ReadonlyArray<string>, allowed: ReadonlyArray<FlagSpec>): { flags: Array<RawFlag>; rest: ReadonlyArray<string>; help: boolean } | string =>
  Either.match(scanFlags(args, { lookup: (name) => allowed.find((f) => f.name === name), helpStops: true }), {
    onLeft: problemText,
    onRight: (s) => ({ flags: s.given.map((g) => ({ spec: g.spec, value: String(g.value) })), rest: s.rest, help: s.help })
  })

const problemWith = (f: RawFlag): string | undefined => {
  const bad = `invalid value "${f.value}" for flag -${f.spec.name}`
  switch (f.spec.kind) {
    case "bool":
    case "list":
      return undefined // read by the parser
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
      if (f.spec.name === "db" && !isPostgresUrl(f.value)) return `${bad}: expected a postgres:// or postgresql:// URL`
      if ((f.spec.name === "addr" || f.spec.name === "metrics") && parseListenAddress(f.value) === undefined) return `${bad}: expected host:port`
      return undefined
  }
}

/** `import -from GO_DIR [-dir DIR]`: -from is required, -dir defaults as for the server. */
const IMPORT_FLAGS: ReadonlyArray<FlagSpec> = [
  { name: "from", kind: "string", description: "data directory of the Go deploy-registry" },
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
  const dir = values.get("dir") ?? FLAGS.find((f) => f.name === "dir")!.default
  if (from === "" || dir === "") return { _tag: "Usage", message: `invalid value "" for flag -${from === "" ? "from" : "dir"}: must not be empty` }
  return { _tag: "Import", from, dir }
}

export const parseArgs = (args: ReadonlyArray<string>, env: Environment = {}): ParsedArgs => {
  if (args[0] === "import") return parseImport(args.slice(1))
  if (args[0] === "verify") {
    const specs = FLAGS.filter((f) => f.name === "dir" || f.name === "db")
    const r = readFlags(args.slice(1), specs)
    if (typeof r === "string") return { _tag: "Usage", message: r }
    if (r.help) return { _tag: "Help", text: usage() }
    if (r.rest.length > 0) return { _tag: "Usage", message: `unexpected argument "${r.rest[0]}"` }
    const values = new Map(r.flags.map((f) => [f.spec.name, f.value]))
    const dir = values.get("dir") ?? FLAGS.find((f) => f.name === "dir")!.default
    if (dir === "") return { _tag: "Usage", message: "invalid value \"\" for flag -dir: must not be empty" }
    const problem = r.flags.map(problemWith).find((p) => p !== undefined)
    if (problem !== undefined) return { _tag: "Usage", message: problem }
    const db = database(values.get("db"), env)
    if (typeof db === "string") return { _tag: "Usage", message: db }
    return { _tag: "Verify", dir, ...db }
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
  const dev = values.get("dev") === "true"
  const get = (name: string) => values.get(name) ?? FLAGS.find((f) => f.name === name)!.default
  // Dev mode changes the defaults only; explicit flags still win.
  const dir = values.get("dir") ?? (dev ? DEV_DIR : get("dir"))
  const opauth = values.get("opauth") ?? (dev ? `${dir}/operator.keys` : get("opauth"))
  const srvauth = values.get("srvauth") ?? (dev ? `${dir}/service.keys` : get("srvauth"))
  const addr = get("addr")
  const { host, port } = parseListenAddress(addr)!
  const db = database(values.get("db"), env)
  if (typeof db === "string") return { _tag: "Usage", message: db }
  const metrics = values.has("metrics") ? parseListenAddress(values.get("metrics")!)! : undefined
  if (metrics !== undefined && !isLoopback(metrics.host) && values.get("metrics-public") !== "true") {
    return { _tag: "Usage", message: `-metrics ${values.get("metrics")} is not a loopback address; add -metrics-public to serve metrics to the network` }
  }
  return {
    _tag: "Serve",
    flags: {
      addr, host, port, dir, opauth, srvauth, dev,
      ...(values.has("hostkey") ? { hostkey: values.get("hostkey")! } : {}),
      ...(metrics !== undefined ? { metrics } : {}),
      maxver: Number(get("maxver")),
      ...db,
      cacheMax: parseSize(get("cache-max"))!,
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
        enabled: get("watch") === "true",
        pingMs: Duration.toMillis(parseGoDuration(get("watch-ping"))!)
      },
      rolloutTickMs: Math.max(10, Duration.toMillis(parseGoDuration(get("rollout-tick"))!))
    }
  }
}
