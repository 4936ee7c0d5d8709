#!/usr/bin/env node
// deployctl entry point: wiring only. The program (argv normalization, the @effect/cli tree,
// exit statuses) is Cli.main; here it gets the live Remote and process I/O (Node's platform services
// only with --completions: Completions.ts).
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit } from "effect"
import { main, plainConsole } from "./Cli.js"
import { RemoteLive } from "./Remote.js"

const colour = process.env.NO_COLOR === undefined || process.env.NO_COLOR === ""
const console = plainConsole({ stdout: colour && process.stdout.isTTY, stderr: colour && process.stderr.isTTY })

const program = main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).pipe(
  (p) => Effect.flatMap(console, (c) => Effect.withConsole(p, c)),
  Effect.provide(RemoteLive)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) onExit(typeof exit.value === "number" ? exit.value : 0)
    else onExit(Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
  }
})
