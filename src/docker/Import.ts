// deploy-from-docker's two halves. `prepareImage` turns a `docker save` stream into planned layers
// without any network (spool, index, whiteout plan; versions are known before anything is packed).
// `publish` makes the registry match: each layer becomes component `<image>.l<N>` at its version —
// packed and uploaded only when the registry lacks that version — then configuration `<image>` is
// created (addconf) or pointed at the new layers (replaceconf); an unchanged image changes nothing.
import { Console, Effect, Either, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Readable } from "node:stream"
import type { Command, LayerRef } from "../domain/Commands.js"
import { ArchiveError, type LocalIoError, RegistryCommandFailed } from "../domain/DockerErrors.js"
import { UsageError } from "../domain/Errors.js"
import { type ComponentName, componentNameProblem, type ConfigurationName, configurationNameProblem, type Sha256, type Version } from "../domain/Names.js"
import type { SshError } from "../ssh/SshError.js"
import { imageName, readArchive } from "./DockerArchive.js"
import { ImportTarget } from "./ImportTarget.js"
import { type Packed, repack, type RepackSource } from "./Repack.js"
import { readIndex } from "./TarFile.js"
import { type LayerPlan, planLayers } from "./Whiteouts.js"

export interface PreparedLayer {
  /** 1-based, manifest order. */
  readonly number: number
  readonly diffId: string
  readonly version: string
  readonly plan: LayerPlan
}

export interface PreparedImage {
  readonly reference: string | undefined
  readonly layers: ReadonlyArray<PreparedLayer>
  readonly sources: ReadonlyArray<RepackSource>
  /** Scratch directory the layer files live in. */
  readonly dir: string
}

export const prepareImage = (input: Readable, dir: string): Effect.Effect<PreparedImage, ArchiveError | LocalIoError> =>
  Effect.gen(function* () {
    const image = yield* readArchive(input, dir)
    const sources: Array<RepackSource> = []
    for (const [i, l] of image.layers.entries()) sources.push({ tarPath: l.tarPath, entries: yield* readIndex(l.tarPath, `layer ${i + 1}`) })
    const plans = planLayers(sources.map((s, i) => ({ diffId: image.layers[i]!.diffId, entries: s.entries })))
    const layers = plans.map((plan, i) => ({ number: i + 1, diffId: image.layers[i]!.diffId, version: plan.version, plan }))
    return { reference: image.reference, layers, sources, dir }
  })

/** Writes layer `number` (1-based) as `<dir>/layer<N>.tar.gz`. */
export const packLayer = (image: PreparedImage, number: number): Effect.Effect<Packed, LocalIoError> =>
  repack(image.sources, number - 1, image.layers[number - 1]!.plan, path.join(image.dir, `layer${number}.tar.gz`))

/** The configuration name: `-name`, else the image reference with `:` and `/` made `.`. */
export const configurationName = (given: string | undefined, image: PreparedImage): Either.Either<string, UsageError | ArchiveError> => {
  const name = given ?? (image.reference === undefined ? undefined : imageName(image.reference))
  if (name === undefined) return Either.left(new ArchiveError({ message: "the image has no name (saved by id?); give one with -name" }))
  const problem = configurationNameProblem(name) ?? componentNameProblem(`${name}.l${image.layers.length}`)
  return problem === undefined ? Either.right(name) : Either.left(new UsageError({ message: `bad image name "${name}": ${problem}` }))
}

export interface LayerOutcome {
  readonly component: string
  readonly version: string
  /** Bytes uploaded, or undefined when the registry had the version already. */
  readonly uploaded: number | undefined
}

export interface PublishReport {
  readonly configuration: string
  readonly layers: ReadonlyArray<LayerOutcome>
  readonly change: "created" | "updated" | "unchanged"
}

type PublishError = SshError | LocalIoError | RegistryCommandFailed

const notFound = (output: string) => /not found/.test(output)

const ShowComp = Schema.parseJson(Schema.Struct({ Versions: Schema.Array(Schema.Struct({ Version: Schema.String })) }))
const ShowConf = Schema.parseJson(Schema.Struct({ Layers: Schema.Array(Schema.Struct({ Name: Schema.String, Version: Schema.String })) }))

const runOk = (cmd: Command) =>
  Effect.flatMap(ImportTarget, (r) => r.run(cmd)).pipe(
    Effect.filterOrElse(
      (res) => res.ok,
      (res) => Effect.fail(new RegistryCommandFailed({ command: cmd._tag, output: res.output }))
    )
  )

const decodeOutput = <A>(schema: Schema.Schema<A, string>, cmd: Command, output: string) =>
  Schema.decode(schema)(output.trim()).pipe(
    Effect.mapError(() => new RegistryCommandFailed({ command: cmd._tag, output: `unexpected reply: ${output.slice(0, 200)}` }))
  )

/** Versions of a component the registry has (none when the component does not exist). */
const versionsOf = (name: ComponentName) =>
  Effect.gen(function* () {
    const cmd: Command = { _tag: "showcomp", name, json: true }
    const res = yield* (yield* ImportTarget).run(cmd)
    if (!res.ok) return notFound(res.output) ? [] : yield* Effect.fail(new RegistryCommandFailed({ command: "showcomp", output: res.output }))
    return (yield* decodeOutput(ShowComp, cmd, res.output)).Versions.map((v) => v.Version)
  })

/** The configuration's current layers, or undefined when it does not exist. */
const layersOf = (name: ConfigurationName) =>
  Effect.gen(function* () {
    const cmd: Command = { _tag: "showconf", name, verbose: false, json: true }
    const res = yield* (yield* ImportTarget).run(cmd)
    if (!res.ok) return notFound(res.output) ? undefined : yield* Effect.fail(new RegistryCommandFailed({ command: "showconf", output: res.output }))
    return (yield* decodeOutput(ShowConf, cmd, res.output)).Layers.map((l) => `${l.Name}:${l.Version}`)
  })

const megabytes = (n: number) => `${(n / 1e6).toFixed(1)} MB`

export const publish = (
  image: PreparedImage,
  name: string,
  extraLayers: ReadonlyArray<LayerRef>
): Effect.Effect<PublishReport, PublishError, ImportTarget> =>
  Effect.gen(function* () {
    const registry = yield* ImportTarget
    const outcomes: Array<LayerOutcome> = []
    for (const layer of image.layers) {
      const component = `${name}.l${layer.number}` as ComponentName
      const version = layer.version as Version
      const label = `layer ${layer.number}/${image.layers.length}  ${component}  ${version}`
      for (const w of layer.plan.warnings) yield* Console.error(`warning: ${w}`)
      if ((yield* versionsOf(component)).includes(version)) {
        yield* Console.log(`${label}  already in the registry`)
        outcomes.push({ component, version, uploaded: undefined })
        continue
      }
      const packed = yield* packLayer(image, layer.number)
      yield* registry.upload(packed.path, `${component}-${version}.tar.gz`)
      yield* Effect.promise(() => fs.rm(packed.path, { force: true }))
      const add: Command = { _tag: "addver", name: component, version, hash: packed.sha256 as Sha256 }
      const res = yield* registry.run(add)
      // Another import of the same image may have added it meanwhile: same version, same content.
      if (!res.ok && !/already exists/.test(res.output)) return yield* Effect.fail(new RegistryCommandFailed({ command: "addver", output: res.output }))
      yield* Console.log(`${label}  uploaded (${packed.entries} entries, ${megabytes(packed.size)})`)
      outcomes.push({ component, version, uploaded: packed.size })
    }
    const layers: Array<LayerRef> = [...outcomes.map((o) => ({ component: o.component as ComponentName, version: o.version as Version })), ...extraLayers]
    const conf = name as ConfigurationName
    const current = yield* layersOf(conf)
    const wanted = layers.map((l) => `${l.component}:${l.version}`)
    let change: PublishReport["change"]
    if (current === undefined) {
      yield* runOk({ _tag: "addconf", name: conf, layers })
      change = "created"
    } else if (current.join("\n") !== wanted.join("\n")) {
      yield* runOk({ _tag: "replaceconf", name: conf, layers })
      change = "updated"
    } else change = "unchanged"
    yield* Console.log(`configuration ${conf} ${change}: ${wanted.join(" ")}`)
    return { configuration: conf, layers: outcomes, change }
  })
