// `deployctl --completions SHELL`: the completion script, written by @effect/cli from the catalogue.
// Its own module, loaded only for --completions: @effect/cli and Node's platform services (which it
// needs) cost ~15 ms of every deployctl start otherwise.
import * as Cli from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect } from "effect"
import { catalogue } from "../domain/Commands.js"
import type { FlagSpec } from "../domain/Flags.js"
import { ctlFlags, globalFlags, signSpec, summaryOf, VERSION, webSpec } from "./Cli.js"

type Value = Options.Options<unknown>

const option = (flag: FlagSpec): Value => {
  switch (flag.kind) {
    case "bool":
      return Options.boolean(flag.name).pipe(Options.withDescription(flag.description))
    case "list":
      return Options.text(flag.name).pipe(Options.repeated, Options.withDescription(flag.description))
    default:
      return Options.text(flag.name).pipe(Options.optional, Options.withDescription(flag.description))
  }
}

// The command tree, for completion scripts only: parsing and help are ours (Cli.ts).
const completionTree = () =>
  Cli.make("deployctl", Object.fromEntries(globalFlags.map((f) => [f.name, option(f)])), () => Effect.void).pipe(
    Cli.withSubcommands(
      [...catalogue, signSpec, webSpec].map((spec) =>
        Cli.make(spec.name, Object.fromEntries(ctlFlags(spec).map((f) => [f.name, option(f)])), () => Effect.void).pipe(
          Cli.withDescription(summaryOf(spec))
        )
      ) as unknown as [Cli.Command<string, never, never, unknown>]
    )
  )

/** deployctl's completion script for `shell` on stdout. */
export const completions = (shell: string) =>
  Cli.run(completionTree(), { name: "deployctl", version: VERSION, executable: "deployctl" })(["node", "deployctl", "--completions", shell]).pipe(
    Effect.provide(NodeContext.layer)
  )
