// deploy-agent -metrics-file: the BUILT agent (`npm run build` first) against a real registry writes a
// node_exporter textfile that Debian's promtool accepts, with what the attempt came to.
import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { configHash } from "../../src/domain/ConfigHash.js"
import { spawnAgent } from "../support/agent.js"
import { runProgram, startRegistry, type TestRegistry } from "../support/registry.js"
import { tarGz } from "./fixtures.js"
import { addVersion, run } from "./operator.js"
import { tempDir } from "./support.js"

let reg: TestRegistry
let dir: string

beforeAll(async () => {
  reg = await startRegistry()
  dir = await tempDir("metrics-file-")
})
afterAll(async () => {
  await reg?.stop()
  await fs.rm(reg.dir, { recursive: true, force: true })
  await fs.rm(dir, { recursive: true, force: true })
})

const sample = (text: string, series: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(series + " "))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe("deploy-agent -metrics-file", () => {
  it("writes the attempt's outcome, timestamps, bytes and durations, in a file promtool accepts", async () => {
    const h1 = configHash([await addVersion(reg, "mfc", "v1", tarGz([{ path: "f", content: "one" }]))])
    await addVersion(reg, "mfc", "v2", tarGz([{ path: "f", content: "two" }]))
    await run(reg, "addconf -name mf -layer mfc:v1")
    const script = path.join(dir, "deploy.sh")
    await fs.writeFile(script, `#!/bin/sh\ngrep -q two "$NEWROOT/f" && { echo "refusing two"; exit 3; }\nexit 0\n`, { mode: 0o755 })
    const file = path.join(dir, "textfile", "deploy-agent.prom")
    await fs.mkdir(path.dirname(file))
    const once = async () => {
      const a = spawnAgent(["-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.agent.privatePath, "-name", "mf",
        "-dir", path.join(dir, "work"), "-script", script, "-metrics-file", file, "-once"], dir)
      const { code } = await a.exited
      return { code, log: a.log(), text: readFileSync(file, "utf8") }
    }

    const first = await once()
    expect(first.code, first.log).toBe(0)
    expect(sample(first.text, `deploy_agent_info{configuration="mf",hash="${h1}",version="${/version="([^"]+)"/.exec(first.text)![1]}"}`)).toBe(1)
    expect(sample(first.text, 'deploy_agent_attempts_total{outcome="deployed"}')).toBe(1)
    expect(sample(first.text, "deploy_agent_last_success_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 120)
    expect(sample(first.text, "deploy_agent_last_attempt_timestamp_seconds")).toBe(sample(first.text, "deploy_agent_last_success_timestamp_seconds"))
    expect(sample(first.text, "deploy_agent_download_bytes_total")).toBeGreaterThan(0)
    expect(sample(first.text, "deploy_agent_unpack_seconds")).toBeGreaterThanOrEqual(0)
    expect(sample(first.text, "deploy_agent_script_seconds")).toBeGreaterThanOrEqual(0)
    // Only the agent's families: no process or runtime metrics in a textfile.
    expect(first.text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).every((l) => l.startsWith("deploy_agent_"))).toBe(true)
    const lint = await runProgram("promtool", ["check", "metrics"], { input: first.text })
    expect(lint.stdout + lint.stderr).toBe("")
    expect(lint.code).toBe(0)

    // A failing deploy: the outcome is counted, no success time, and the info still names what runs.
    await run(reg, "changeconf -name mf -component mfc -version v2")
    const second = await once()
    expect(second.code).toBe(1)
    expect(sample(second.text, 'deploy_agent_attempts_total{outcome="failed"}')).toBe(1)
    expect(sample(second.text, "deploy_agent_last_success_timestamp_seconds")).toBeUndefined()
    expect(second.text).toContain(`hash="${h1}"`)
    expect((await runProgram("promtool", ["check", "metrics"], { input: second.text })).code).toBe(0)
    // Written by rename: no temp file is left beside it.
    expect(await fs.readdir(path.dirname(file))).toEqual(["deploy-agent.prom"])
  })
})
