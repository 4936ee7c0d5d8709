// The operator command catalogue, defined once. The registry interprets a parsed Command against
// its Storage; deployctl validates the same Command locally and sends `toArgv(cmd)` over SSH exec.
import { Either } from "effect"
import { UnknownCommand, UsageError } from "./Errors.js"
import { flag, type FlagSpec, flagUsage, parseFlags, type RawFlags } from "./Flags.js"
import { armoredSignature, signatureBody, type SignedState, signedState } from "./SignedState.js"
import { type RolloutCommand, rolloutArgv, rolloutFlags, validateRollout } from "./RolloutCommand.js"
import { rfc3339Seconds } from "./Time.js"
import {
  type ComponentName,
  componentNameProblem,
  type ConfigurationName,
  configurationNameProblem,
  type Sha256,
  sha256Problem,
  type Version,
  versionProblem
} from "./Names.js"

export interface CommandSpec {
  readonly name: CommandName
  readonly summary: string
  readonly flags: ReadonlyArray<FlagSpec>
}

const f = flag
const expect = f("expect", "fail unless the configuration's current hash is this one (optimistic concurrency)")
const json = f("json", "print machine-readable JSON", "bool")

export const catalogue = [
  {
    name: "addver",
    summary: "add new component version from previously uploaded file",
    flags: [f("name", "component name"), f("version", "version name"), f("hash", "sha256 of the uploaded file")]
  },
  {
    name: "addconf",
    summary: "add new configuration from existing component versions",
    flags: [f("name", "configuration name"), f("layer", "component:version, repeat in order", "list")]
  },
  {
    name: "bumpconf",
    summary: "update single layer of configuration to most recent uploaded version",
    flags: [f("name", "configuration name"), f("component", "component to bump"), expect]
  },
  {
    name: "changeconf",
    summary: "update single layer of configuration to specific version",
    flags: [f("name", "configuration name"), f("component", "component to change"), f("version", "version to use"), expect]
  },
  {
    name: "replaceconf",
    summary: "replace all layers of an existing configuration",
    flags: [f("name", "configuration name"), f("layer", "component:version, repeat in order", "list"), expect]
  },
  {
    name: "showconf",
    summary: "show configuration",
    flags: [f("name", "configuration name"), f("v", "also print name, mtime and hash", "bool"), json]
  },
  { name: "showcomp", summary: "show component versions", flags: [f("name", "component name"), json] },
  { name: "components", summary: "list all known components", flags: [json] },
  { name: "configurations", summary: "list all known configurations", flags: [json] },
  { name: "delver", summary: "delete component version", flags: [f("name", "component name"), f("version", "version")] },
  { name: "delcomp", summary: "delete all component versions", flags: [f("name", "component name")] },
  {
    name: "delconf",
    summary: "delete configuration",
    flags: [f("name", "configuration name"), f("force", "confirm removal", "bool")]
  },
  {
    name: "history",
    summary: "show every state a configuration has had, newest first; the current one is marked (current)",
    flags: [f("name", "configuration name"), f("n", "show only the N newest states"), json]
  },
  {
    name: "rollback",
    summary: "make the previous (or the given) state of a configuration current again",
    flags: [f("name", "configuration name"), f("to", "hash of the state to return to"), expect]
  },
  {
    name: "addsig",
    summary: "attach an operator's SSH signature (deployctl sign) to the configuration's current state",
    flags: [f("name", "configuration name"), f("hash", "the signed hash (must be the current one)"), f("time", "the signing time, YYYY-MM-DDTHH:MM:SSZ"),
      f("signature", "the SSHSIG signature (armored, or its base64 body)")]
  },
  { name: "verify", summary: "check every stored blob and reference; exit 1 on any problem", flags: [] },
  {
    name: "status",
    summary: "what every host runs: per configuration counts, or with -name one line per host",
    flags: [f("name", "configuration name (default: all, one line each)"), json,
      f("timeline", "with -name: each host's deploy outcomes of the last 24 h, oldest first per host", "bool")]
  },
  {
    name: "forget",
    summary: "remove a host from a configuration's status",
    flags: [f("name", "configuration name"), f("host", "host name as status shows it")]
  },
  {
    name: "rollout",
    summary: "roll a change out in waves (docs/rollouts.md), or show (-status), -pause, -resume, -abort one",
    flags: rolloutFlags
  },
  {
    name: "events",
    summary: "stream changes, host reports and rollout steps as JSON lines until closed (exec only)",
    flags: []
  },
  { name: "help", summary: "show this command list", flags: [] }
] as const satisfies ReadonlyArray<{ name: string; summary: string; flags: ReadonlyArray<FlagSpec> }>

export type CommandName = (typeof catalogue)[number]["name"]

export const specOf = (name: string): CommandSpec | undefined => catalogue.find((c) => c.name === name)

export interface LayerRef {
  readonly component: ComponentName
  readonly version: Version
}

export type Command =
  | { readonly _tag: "addver"; readonly name: ComponentName; readonly version: Version; readonly hash: Sha256 }
  | { readonly _tag: "addconf"; readonly name: ConfigurationName; readonly layers: ReadonlyArray<LayerRef> }
  | { readonly _tag: "bumpconf"; readonly name: ConfigurationName; readonly component: ComponentName; readonly expect?: Sha256 }
  | {
      readonly _tag: "changeconf"
      readonly name: ConfigurationName
      readonly component: ComponentName
      readonly version: Version
      readonly expect?: Sha256
    }
  | { readonly _tag: "replaceconf"; readonly name: ConfigurationName; readonly layers: ReadonlyArray<LayerRef>; readonly expect?: Sha256 }
  | { readonly _tag: "showconf"; readonly name: ConfigurationName; readonly verbose: boolean; readonly json: boolean }
  | { readonly _tag: "showcomp"; readonly name: ComponentName; readonly json: boolean }
  | { readonly _tag: "components"; readonly json: boolean }
  | { readonly _tag: "configurations"; readonly json: boolean }
  | { readonly _tag: "delver"; readonly name: ComponentName; readonly version: Version }
  | { readonly _tag: "delcomp"; readonly name: ComponentName }
  | { readonly _tag: "delconf"; readonly name: ConfigurationName; readonly force: boolean }
  | { readonly _tag: "history"; readonly name: ConfigurationName; readonly n?: number; readonly json: boolean }
  | { readonly _tag: "rollback"; readonly name: ConfigurationName; readonly to?: Sha256; readonly expect?: Sha256 }
  | { readonly _tag: "addsig"; readonly state: SignedState; readonly signature: string }
  | { readonly _tag: "verify" }
  | { readonly _tag: "status"; readonly name?: ConfigurationName; readonly json: boolean; readonly timeline?: boolean }
  | { readonly _tag: "forget"; readonly name: ConfigurationName; readonly host: string }
  | RolloutCommand
  | { readonly _tag: "events" }
  | { readonly _tag: "help" }

const usage = (message: string) => new UsageError({ message })

const check = (problem: string | undefined): Either.Either<void, UsageError> =>
  problem === undefined ? Either.void : Either.left(usage(problem))

const layerRef = (s: string): Either.Either<LayerRef, UsageError> => {
  const i = s.indexOf(":")
  if (i <= 0 || i === s.length - 1) return Either.left(usage(`layer "${s}" should be in component:version form`))
  const component = s.slice(0, i)
  const version = s.slice(i + 1)
  return Either.gen(function* () {
    yield* check(componentNameProblem(component))
    yield* check(versionProblem(version))
    return { component: component as ComponentName, version: version as Version }
  })
}

const layerList = (raw: RawFlags): Either.Either<ReadonlyArray<LayerRef>, UsageError> =>
  Either.gen(function* () {
    const specs = raw.lists.get("layer") ?? []
    if (specs.length === 0) return yield* Either.left(usage("name and at least one layer should be set"))
    const refs: Array<LayerRef> = []
    for (const s of specs) refs.push(yield* layerRef(s))
    return refs
  })

const optionalHash = (raw: RawFlags, flag: string): Either.Either<Sha256 | undefined, UsageError> => {
  const v = raw.strings.get(flag)
  if (v === undefined) return Either.right(undefined)
  const h = v.toLowerCase()
  return sha256Problem(h) === undefined ? Either.right(h as Sha256) : Either.left(usage(`-${flag}: ${sha256Problem(h)}`))
}

const required = (raw: RawFlags, names: ReadonlyArray<string>, message: string): Either.Either<ReadonlyArray<string>, UsageError> => {
  const values = names.map((n) => raw.strings.get(n) ?? "")
  return values.some((v) => v === "") ? Either.left(usage(message)) : Either.right(values)
}

const confName = (s: string) => Either.map(check(configurationNameProblem(s)), () => s as ConfigurationName)
const compName = (s: string) => Either.map(check(componentNameProblem(s)), () => s as ComponentName)
const versionName = (s: string) => Either.map(check(versionProblem(s)), () => s as Version)

/** Validates parsed flags into a typed Command: the same checks on the registry and in deployctl. */
export const validate = (name: CommandName, raw: RawFlags): Either.Either<Command, UsageError> =>
  Either.gen(function* () {
    const has = (b: string) => raw.bools.has(b)
    switch (name) {
      case "addver": {
        const [n, v, h] = yield* required(raw, ["name", "version", "hash"], "name, version and hash should all be set")
        const hash = h!.toLowerCase()
        yield* check(sha256Problem(hash))
        return { _tag: "addver", name: yield* compName(n!), version: yield* versionName(v!), hash: hash as Sha256 } as const
      }
      case "addconf":
      case "replaceconf": {
        const [n] = yield* required(raw, ["name"], "name and at least one layer should be set")
        const layers = yield* layerList(raw)
        const cname = yield* confName(n!)
        if (name === "addconf") return { _tag: "addconf", name: cname, layers } as const
        const expect = yield* optionalHash(raw, "expect")
        return { _tag: "replaceconf", name: cname, layers, ...(expect ? { expect } : {}) } as const
      }
      case "bumpconf": {
        const [n, c] = yield* required(raw, ["name", "component"], "name and component should both be set")
        const expect = yield* optionalHash(raw, "expect")
        return { _tag: "bumpconf", name: yield* confName(n!), component: yield* compName(c!), ...(expect ? { expect } : {}) } as const
      }
      case "changeconf": {
        const [n, c, v] = yield* required(raw, ["name", "component", "version"], "name, component and version should all be set")
        const expect = yield* optionalHash(raw, "expect")
        return {
          _tag: "changeconf",
          name: yield* confName(n!),
          component: yield* compName(c!),
          version: yield* versionName(v!),
          ...(expect ? { expect } : {})
        } as const
      }
      case "showconf": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        return { _tag: "showconf", name: yield* confName(n!), verbose: has("v"), json: has("json") } as const
      }
      case "showcomp": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        return { _tag: "showcomp", name: yield* compName(n!), json: has("json") } as const
      }
      case "components":
      case "configurations":
        return { _tag: name, json: has("json") } as const
      case "delver": {
        const [n, v] = yield* required(raw, ["name", "version"], "name and version should both be set")
        return { _tag: "delver", name: yield* compName(n!), version: yield* versionName(v!) } as const
      }
      case "delcomp": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        return { _tag: "delcomp", name: yield* compName(n!) } as const
      }
      case "delconf": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        return { _tag: "delconf", name: yield* confName(n!), force: has("force") } as const
      }
      case "history": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        const count = raw.strings.get("n")
        if (count !== undefined && !/^[1-9][0-9]{0,8}$/.test(count)) return yield* Either.left(usage(`-n: "${count}" is not a positive number of states`))
        return { _tag: "history", name: yield* confName(n!), ...(count !== undefined ? { n: Number(count) } : {}), json: has("json") } as const
      }
      case "rollback": {
        const [n] = yield* required(raw, ["name"], "name should be set")
        const to = yield* optionalHash(raw, "to")
        const expect = yield* optionalHash(raw, "expect")
        return { _tag: "rollback", name: yield* confName(n!), ...(to ? { to } : {}), ...(expect ? { expect } : {}) } as const
      }
      case "addsig": {
        const [n, h, t, sig] = yield* required(raw, ["name", "hash", "time", "signature"], "name, hash, time and signature should all be set")
        const state = signedState(n!, h!.toLowerCase(), t!)
        if (typeof state === "string") return yield* Either.left(usage(state))
        return { _tag: "addsig", state, signature: armoredSignature(sig!) } as const
      }
      case "verify":
        return { _tag: "verify" } as const
      case "status": {
        const n = raw.strings.get("name")
        if (has("timeline") && n === undefined) return yield* Either.left(usage("-timeline needs -name"))
        return { _tag: "status", ...(n !== undefined ? { name: yield* confName(n) } : {}), json: has("json"), ...(has("timeline") ? { timeline: true } : {}) } as const
      }
      case "forget": {
        const [n, h] = yield* required(raw, ["name", "host"], "name and host should both be set")
        if (/\p{Cc}/u.test(h!)) return yield* Either.left(usage("host cannot contain control characters"))
        return { _tag: "forget", name: yield* confName(n!), host: h! } as const
      }
      case "rollout":
        return yield* validateRollout(raw, layerList)
      case "events":
        return { _tag: "events" } as const
      case "help":
        return { _tag: "help" } as const
    }
  })

/** What parsing an argument vector gives: a command, a request for help on one, or an error. */
export type Parsed =
  | { readonly _tag: "Command"; readonly command: Command }
  | { readonly _tag: "Help"; readonly spec: CommandSpec }

export const parse = (argv: ReadonlyArray<string>): Either.Either<Parsed, UsageError | UnknownCommand> => {
  const [name, ...args] = argv
  if (name === undefined) return Either.left(usage("no command given; run help for the command list"))
  const spec = specOf(name)
  if (spec === undefined) return Either.left(new UnknownCommand({ command: name }))
  return Either.flatMap(
    parseFlags(spec.flags, args),
    (raw): Either.Either<Parsed, UsageError> =>
      raw.help ? Either.right({ _tag: "Help", spec }) : Either.map(validate(spec.name, raw), (command) => ({ _tag: "Command", command }))
  )
}

/** The command as a canonical argument vector (`-flag=value` form), for sending over SSH. */
export const toArgv = (cmd: Command): Array<string> => {
  if (cmd._tag === "addsig") {
    const { name, hash, time } = cmd.state
    return ["addsig", `-name=${name}`, `-hash=${hash}`, `-time=${rfc3339Seconds(time)}`, `-signature=${signatureBody(cmd.signature)}`]
  }
  if (cmd._tag === "rollout") return rolloutArgv(cmd)
  const out: Array<string> = [cmd._tag]
  for (const [k, v] of Object.entries(cmd)) {
    if (k === "_tag" || v === undefined || v === false) continue
    if (k === "layers") for (const l of v as ReadonlyArray<LayerRef>) out.push(`-layer=${l.component}:${l.version}`)
    else if (k === "verbose") out.push("-v")
    else if (v === true) out.push(`-${k}`)
    else out.push(`-${k}=${String(v)}`)
  }
  return out
}

/** The command list printed by `help` and after an unknown command. */
export const commandList = (): string => {
  const width = Math.max(...catalogue.map((c) => c.name.length)) + 2
  return (
    catalogue.map((c) => c.name.padEnd(width) + c.summary).join("\n") + "\n\nuse -h flag to get more help on a specific command\n"
  )
}

/** Usage of one command, in the style of Go's flag package. */
export const commandUsage = (spec: CommandSpec): string =>
  `Usage of ${spec.name}: ${spec.summary}\n` +
  spec.flags.map(flagHelp).join("")

/** One flag of a command's usage (deployctl's help too). */
export const flagHelp = (fl: FlagSpec): string => flagUsage(fl, fl.kind === "bool" ? "" : fl.kind === "list" ? "value (repeatable)" : "string")
