// What an integration test file starts (registries, agents, temp dirs): agents are killed after each
// test, registries stopped and directories removed after the file.
import { promises as fs } from "node:fs"
import { afterAll, afterEach } from "vitest"
import type { RunningAgent } from "./agent.js"
import type { TestRegistry } from "./registry.js"

export const testResources = () => {
  const dirs: Array<string> = []
  const registries: Array<TestRegistry> = []
  const agents: Array<RunningAgent> = []
  afterEach((ctx) => {
    // A failed test shows what its agents said (the last lines of each), which the assertion cannot.
    if (ctx.task.result?.state === "fail") {
      for (const a of agents) console.error(`--- agent pid ${a.child.pid}:\n${a.log().split("\n").slice(-40).join("\n")}`)
    }
    for (const a of agents.splice(0)) a.child.kill("SIGKILL")
  })
  afterAll(async () => {
    for (const r of registries) await r.stop("SIGKILL")
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true })
  })
  return { dirs, registries, agents }
}
