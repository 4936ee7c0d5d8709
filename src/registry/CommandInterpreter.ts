// Runs one operator command (an exec payload or a shell line) against Storage and renders the
// output formats of DESIGN.md. Everything goes to stdout; exit status 0 or 1.
//
// `-json` shapes (one line of JSON, stable; times RFC 3339 with fractional seconds, UTC):
//   components, configurations: ["name", …] in byte order
//   showcomp:  {"Name":"code","Versions":[{"Version":"v01","Hash":"<sha256>","Ctime":"…"}, …]} oldest first
//   showconf:  the configuration document agents read ({"Name","Mtime","Hash","Layers":[{"Name","Version","File","Hash","Ctime"}]})
//   history:   [{"Time":"…","Hash":"…","Who":{"User":"…","Fingerprint":"SHA256:…","Comment":"…"},
//                "Layers":[{"Name":"code","Version":"v01","Hash":"<sha256>"}],"Current":true|false,
//                "Signatures":[{"Fingerprint":"SHA256:…","Time":"…"}] (signed states only),
//                "Rollout":{"Phase","Reason"?,"From","Events":[{"Time","By"?,"Text"}]} (rollout targets only)}, …] newest first
//   (text: the current state's row ends in an extra column "(current)"; layers always contain a ":";
//    a rollout target's row is followed by its events, lines starting with "rollout ": HistoryView.ts)
//   status:    with -name {"Name","Hash","Hosts":[{"Host","Kind","State",…}]}, without a list of counts (StatusView.ts)
//   status -name N -timeline: [{"Host","Time","Hash","Outcome"}, …] the last 24 h, by host then time (Timeline.ts)
import { Cause, Context, Effect, Either, Exit, Layer, Option, Schema } from "effect"
import { type Command, commandList, commandUsage, parse } from "../domain/Commands.js"
import { ConfigurationDocument } from "../domain/Document.js"
import { type CommandError, ConfigurationNotFound, ForceRequired, StorageError, UsageError } from "../domain/Errors.js"
import type { Principal } from "../domain/Principal.js"
import { split } from "../domain/ShellWords.js"
import { rfc3339Nano, rfc3339Seconds } from "../domain/Time.js"
import { BlobStore } from "./BlobStore.js"
import { HostStatus } from "./HostStatus.js"
import { Rollouts } from "./Rollouts.js"
import { renderConfiguration, renderSummary } from "./StatusView.js"
import { LayerVerdicts } from "./LayerVerdicts.js"
import { bump, commandBy, type CommandLabel, commandLabel } from "./RegistryMetrics.js"
import { historyJson, historyText } from "./HistoryView.js"
import { Signatures } from "./Signatures.js"
import { renderTimeline } from "./TimelineView.js"
import { Timeline } from "./Timeline.js"
import { type StateInfo, Storage } from "./Storage.js"
import { Uploads } from "./Uploads.js"
import { renderReport, verify } from "./Verify.js"

export interface CommandResult {
  readonly output: string
  readonly exitCode: 0 | 1
}

export class CommandInterpreter extends Context.Tag("registry/CommandInterpreter")<
  CommandInterpreter,
  {
    /**
     * `line` is shell-word split; `who` is recorded as the author of any change. When the answer is at hand
     * (a read-only command answered since the last change) the Effect is that answer, an Exit, already
     * counted in the metrics: a caller may then use it without running a fiber (SshServer).
     */
    readonly run: (line: string, who: Principal) => Effect.Effect<CommandResult>
  }
>() {}

const width = (s: string) => [...s].length // Go's tabwriter counts runes

/**
 * Go's text/tabwriter with minwidth 0, padding 3, padchar ' ': every column but the last is as wide
 * as its widest cell plus 3; the last cell of a line is written as is. Each row ends with "\n".
 */
export const tabwrite = (rows: ReadonlyArray<ReadonlyArray<string>>, padding = 3): string => {
  const widths: Array<number> = []
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, width(cell))
    })
  }
  return rows
    .map((row) => row.map((cell, i) => (i < row.length - 1 ? cell + " ".repeat(widths[i]! + padding - width(cell)) : cell)).join("") + "\n")
    .join("")
}

/** Go's %q for the names we allow (no control characters): a double-quoted string. */
const goQuote = (s: string) => JSON.stringify(s)

const lines = (xs: ReadonlyArray<string>) => xs.map((x) => `${x}\n`).join("")
const json = (v: unknown) => `${JSON.stringify(v)}\n`

const ok = (output = ""): CommandResult => ({ output, exitCode: 0 })

/** What a rollback changed, one row per component whose version changed, was added or removed. */
const diff = (before: StateInfo, after: StateInfo): string => {
  const old = new Map(before.layers.map((l) => [l.component, l.version]))
  const now = new Map(after.layers.map((l) => [l.component, l.version]))
  const rows: Array<Array<string>> = []
  for (const l of after.layers) {
    const was = old.get(l.component)
    if (was !== l.version) rows.push([l.component, `${was ?? "(none)"} -> ${l.version}`])
  }
  for (const l of before.layers) if (!now.has(l.component)) rows.push([l.component, `${l.version} -> (none)`])
  if (rows.length === 0) rows.push(["(layer order changed)"])
  return `rolled back "${after.configuration}" to ${after.hash}:\n` + tabwrite(rows)
}

const recordNow = (name: CommandLabel, ok: boolean, seconds: number) => {
  const m = commandBy[name]
  bump(ok ? m.ok : m.error)
  m.seconds.unsafeUpdate(seconds, [])
}
const recordCommand = (name: CommandLabel, ok: boolean, seconds: number) => Effect.sync(() => recordNow(name, ok, seconds))

/**
 * Commands whose answer depends only on what Storage.generation covers (versions, configuration names) and
 * not on who asks: their answers are kept until the next change. Not showconf/history/status: rollouts
 * and signatures change those outside Storage.
 */
const READ_ONLY: ReadonlySet<Command["_tag"]> = new Set(["help", "components", "configurations", "showcomp"])
/** Kept answers: at most this many lines, each at most this long (a client cannot grow the cache). */
const MAX_ANSWERS = 64
const MAX_CACHED_LINE = 256

export const make = Effect.gen(function* () {
  const storage = yield* Storage
  const blobs = yield* BlobStore
  const uploads = yield* Uploads
  const verdicts = yield* LayerVerdicts
  const signatures = yield* Signatures
  const hosts = yield* HostStatus
  const rollouts = yield* Rollouts
  // Kept when wired (main.ts); unit tests may build the interpreter without it (then it is empty).
  const timeline = yield* Effect.serviceOption(Timeline)

  /**
   * addver (fault 1): inside one transaction, record the version (fails if it exists: the upload is
   * untouched), then move the upload into the blob store, then commit. A crash after the move and
   * before the commit leaves a blob without a version: harmless, a retried addver finds the blob,
   * retention removes it otherwise. A version without its blob cannot happen.
   */
  /**
   * The layer must be one agents unpack (LayerVerdicts): checked before the transaction, which holds
   * the database, and off this thread. A file that vanished meanwhile (swept) is "not found".
   */
  const checkLayer = (cmd: Extract<Command, { _tag: "addver" }>) =>
    Effect.gen(function* () {
      const file = (yield* blobs.has(cmd.hash)) ? yield* blobs.local(cmd.hash) : yield* uploads.find(cmd.hash)
      yield* verdicts.check(cmd.hash, file, `${cmd.name}@${cmd.version}`).pipe(
        Effect.catchTag("LayerUnreadable", (e) =>
          Effect.zipRight(
            blobs.has(cmd.hash).pipe(Effect.flatMap((has) => (has ? Effect.void : Effect.asVoid(uploads.find(cmd.hash))))),
            Effect.fail(new StorageError({ reason: "cannot read the uploaded layer", cause: e }))
          )
        )
      )
    })

  const addver = (cmd: Extract<Command, { _tag: "addver" }>) =>
    Effect.zipRight(checkLayer(cmd), storage.transaction(
      Effect.gen(function* () {
        yield* storage.addVersion(cmd.name, cmd.version, cmd.hash)
        if (yield* blobs.has(cmd.hash)) return // written once: an identical staged copy is left to the upload sweep
        const staged = yield* uploads.find(cmd.hash)
        // The upload sweep may have taken it meanwhile: say so rather than "internal error".
        yield* blobs
          .adopt(staged, cmd.hash)
          .pipe(Effect.catchTag("StorageError", (e) => Effect.zipRight(uploads.find(cmd.hash), Effect.fail(e))))
      })
    ))

  const execute = (cmd: Command, who: Principal): Effect.Effect<CommandResult, CommandError> => {
    switch (cmd._tag) {
      case "help":
        return Effect.succeed(ok(commandList()))
      case "components":
        return Effect.map(storage.componentNames, (names) => ok(cmd.json ? json(names) : lines(names)))
      case "configurations":
        return Effect.map(storage.configurationNames, (names) => ok(cmd.json ? json(names) : lines(names)))
      case "showcomp":
        return Effect.map(storage.versions(cmd.name), (vs) =>
          ok(
            cmd.json
              ? json({ Name: cmd.name, Versions: vs.map((v) => ({ Version: v.version, Hash: v.hash, Ctime: rfc3339Nano(v.ctime) })) })
              : tabwrite(vs.map((v) => [rfc3339Seconds(v.ctime), v.version]))
          )
        )
      case "showconf":
        return storage.document(cmd.name).pipe(
          Effect.flatMap(Option.match({ onNone: () => Effect.fail(new ConfigurationNotFound({ name: cmd.name })), onSome: Effect.succeed })),
          Effect.map((doc) => {
            if (cmd.json) return ok(json(Schema.encodeSync(ConfigurationDocument)(doc)))
            const head = cmd.verbose ? `Name:\t${doc.Name}\nMtime:\t${rfc3339Seconds(doc.Mtime)}\nHash:\t${doc.Hash}\n\n` : ""
            return ok(head + tabwrite(doc.Layers.map((l) => [l.Name, l.Version, rfc3339Seconds(l.Ctime)])))
          })
        )
      case "history":
        return Effect.gen(function* () {
          const [states, current] = yield* Effect.zip(storage.history(cmd.name, cmd.n), storage.current(cmd.name))
          const ids = states.map((s) => s.id)
          const h = { states, currentId: current.id, signatures: yield* signatures.ofStates(ids), rollouts: yield* rollouts.ofStates(ids) }
          return ok(cmd.json ? historyJson(h) : historyText(h, tabwrite))
        })
      case "addsig":
        return Effect.map(signatures.attach(cmd.state, cmd.signature, who), (g) =>
          ok(`signature by ${g.fingerprint} attached to "${cmd.state.name}" at ${cmd.state.hash}\n`))
      case "addver":
        return Effect.as(addver(cmd), ok())
      case "addconf":
        return Effect.as(storage.addConfiguration(cmd.name, cmd.layers, who), ok())
      case "changeconf":
        return Effect.as(storage.changeConfiguration(cmd.name, cmd.component, cmd.version, who, cmd.expect), ok())
      case "replaceconf":
        return Effect.as(storage.replaceConfiguration(cmd.name, cmd.layers, who, cmd.expect), ok())
      case "bumpconf":
        return Effect.map(storage.bumpConfiguration(cmd.name, cmd.component, who, cmd.expect), (change) => {
          if (!change.changed) return ok() // already the newest version: nothing written (fault 8)
          const was = change.before.layers.find((l) => l.component === cmd.component)!
          return ok(
            `to roll back run:\tchangeconf -name=${goQuote(cmd.name)} -component=${goQuote(cmd.component)} -version=${goQuote(was.version)}\n`
          )
        })
      case "rollback":
        return Effect.map(storage.rollback(cmd.name, cmd.to, who, cmd.expect), (change) =>
          ok(change.changed ? diff(change.before, change.after) : `configuration "${cmd.name}" is already at ${change.after.hash}\n`)
        )
      case "delver":
        return Effect.as(storage.deleteVersion(cmd.name, cmd.version), ok())
      case "delcomp":
        return Effect.as(storage.deleteComponent(cmd.name), ok())
      case "delconf":
        return cmd.force
          ? Effect.as(storage.deleteConfiguration(cmd.name), ok())
          : Effect.fail(new ForceRequired())
      case "status":
        if (cmd.timeline === true && cmd.name !== undefined) {
          const name = cmd.name
          return Effect.zipRight(
            storage.current(name),
            Option.match(timeline, { onNone: () => Effect.succeed([]), onSome: (t) => t.entries(name) })
          ).pipe(Effect.map((entries) => ok(renderTimeline(entries, tabwrite, cmd.json))))
        }
        return cmd.name === undefined
          ? Effect.map(Effect.zip(storage.currentStates, hosts.rows()), ([states, rows]) =>
              ok(renderSummary(states.map((s) => ({ name: s.configuration, hash: s.hash })), rows, tabwrite, cmd.json))
            )
          : Effect.map(Effect.zip(storage.current(cmd.name), hosts.rows(cmd.name)), ([state, rows]) => {
              const text = renderConfiguration(state.configuration, state.hash, rows, tabwrite, cmd.json)
              const rollout = cmd.json ? undefined : rollouts.summary(state.configuration)
              return ok(rollout === undefined ? text : `${text}${rollout}\n`)
            })
      case "rollout":
        return Effect.map(rollouts.run(cmd, who), ok)
      case "events":
        return Effect.fail(new UsageError({ message: "events streams over an exec channel only: ssh … events (or deployctl web)" }))
      case "forget":
        return Effect.flatMap(hosts.forget(cmd.name, cmd.host), (found) =>
          found ? Effect.succeed(ok()) : Effect.fail(new UsageError({ message: `host ${JSON.stringify(cmd.host)} not found in configuration ${JSON.stringify(cmd.name)}` }))
        )
      case "verify":
        return verify.pipe(
          Effect.map(renderReport),
          Effect.provideService(Storage, storage),
          Effect.provideService(BlobStore, blobs)
        )
    }
  }

  // Answers to read-only commands by their exact line, kept for one Storage generation: the handshake bench's
  // `configurations` (and any script's repeated reads) skip parsing, the database and the fiber (SshServer).
  const answers = new Map<string, { readonly name: CommandLabel; readonly result: CommandResult }>()
  let answersAt: number | undefined
  const cached = (line: string) => {
    const at = storage.generation()
    return at !== undefined && at === answersAt ? answers.get(line) : undefined
  }
  /** Keeps an answer read wholly at generation `at` (a change that began or ended meanwhile moved it). */
  const keep = (line: string, name: CommandLabel, result: CommandResult, at: number | undefined) => {
    if (at === undefined || at !== storage.generation() || line.length > MAX_CACHED_LINE) return
    if (answersAt !== at || answers.size >= MAX_ANSWERS) answers.clear()
    answersAt = at
    answers.set(line, { name, result })
  }

  const run = (line: string, who: Principal): Effect.Effect<CommandResult> => {
    const hit = cached(line)
    if (hit !== undefined) {
      recordNow(hit.name, true, 0)
      return Exit.succeed(hit.result)
    }
    let name: CommandLabel = "unknown"
    let started = 0
    return Effect.suspend(() => {
      started = performance.now()
      const parsed = Either.flatMap(split(line), parse)
      if (Either.isLeft(parsed)) return Effect.fail(parsed.left)
      const p = parsed.right
      name = commandLabel(p._tag === "Help" ? "help" : p.command._tag)
      if (p._tag === "Help") return Effect.succeed(ok(commandUsage(p.spec)))
      if (!READ_ONLY.has(p.command._tag)) return execute(p.command, who)
      const at = storage.generation()
      return Effect.tap(execute(p.command, who), (r) => keep(line, name, r, at))
    }).pipe(
      Effect.catchAll((e) =>
        Effect.succeed<CommandResult>({
          output: `${e.message}\n${e._tag === "UnknownCommand" ? commandList() : ""}`,
          exitCode: 1
        })
      ),
      Effect.catchAllCause((cause) =>
        // Interruption (the connection went away) stays interruption. Anything else is a bug, not an
        // operator error: details go to the server log, the operator gets one line.
        Cause.isInterruptedOnly(cause)
          ? Effect.failCause(cause)
          : Effect.as(Effect.logError("console command failed", Cause.pretty(cause)), {
              output: "internal error\n",
              exitCode: 1
            } satisfies CommandResult)
      ),
      Effect.tap((r) => recordCommand(name, r.exitCode === 0, (performance.now() - started) / 1000))
    )
  }

  return CommandInterpreter.of({ run })
})

/** Requires Storage, BlobStore, Uploads, LayerVerdicts, Signatures, HostStatus and Rollouts. */
export const CommandInterpreterLive = Layer.effect(CommandInterpreter, make)
