// Integration: the BUILT deployctl (`node dist/ctl/main.js`; run `npm run build` first) against
// a real registry on 127.0.0.1: the README lines verbatim (authenticated by a real ssh-agent),
// exit statuses, and an upload interrupted halfway. Everything else: Remote.test.ts, in process.
import { createReadStream, createWriteStream } from "node:fs"
import { readdir, readFile, stat } from "node:fs/promises"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import * as zlib from "node:zlib"
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Env, type Fixture, run, setup, sha256 } from "./harness.js"

let fx: Fixture
let agentSock: string
let agentPid: number | undefined

/** No -key: the agent, or nothing. */
const env = (extra: Env = {}): Env => {
  const e: Env = { ...process.env, ...fx.baseEnv(), ...extra }
  if (extra.SSH_AUTH_SOCK === undefined) delete e.SSH_AUTH_SOCK
  return e
}
const bin = (e: Env, ...args: Array<string>) => fx.spawnCtl(args, e).done

beforeAll(async () => {
  fx = await setup()
  // A real ssh-agent holding the operator key.
  agentSock = path.join(fx.work, "agent.sock")
  const { stdout } = await run("ssh-agent", ["-s", "-a", agentSock])
  agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(stdout)?.[1])
  await run("ssh-add", ["-q", fx.reg.operator.privatePath], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } })
  for (const args of [
    ["addver", "-name", "code", "-version", "v01", "-file", "code_v1.tar.gz"],
    ["addver", "-name", "config", "-version", "v01", "-file", "config_v1.tar.gz"],
    ["addconf", "-name", "project1", "-layer", "code:v01", "-layer", "config:v01"]
  ]) {
    const r = await fx.ctl(...args)
    if (r.code !== 0) throw new Error(`setup ${args.join(" ")}: ${JSON.stringify(r)}`)
  }
})

afterAll(async () => {
  if (agentPid) {
    try {
      process.kill(agentPid, "SIGTERM")
    } catch {
      // already gone
    }
  }
  await fx?.cleanup()
})

describe("the built deployctl against a registry", () => {
  it("the README lines verbatim, authenticated by ssh-agent; exit statuses 0, 1, 2", async () => {
    const e = env({ SSH_AUTH_SOCK: agentSock })
    // $ deployctl addver -name config -version v02 -file config_v2.tar.gz
    expect(await bin(e, "addver", "-name", "config", "-version", "v02", "-file", "config_v2.tar.gz")).toMatchObject({ code: 0, stdout: expect.stringMatching(/^added config v02 sha256 [0-9a-f]{64} \(\d+ bytes\)\n$/), stderr: "" })
    // $ deployctl changeconf -name project1 -component config -version v02
    expect(await bin(e, "changeconf", "-name", "project1", "-component", "config", "-version", "v02")).toEqual({ code: 0, stdout: "", stderr: "" })
    // $ deployctl showconf -name project1
    const [show, missing, usage, help, completions] = await Promise.all([
      bin(e, "showconf", "-name", "project1"),
      bin(e, "showconf", "-name", "nope"),
      bin(e, "showconf"),
      bin(e, "-h"),
      bin(e, "--completions", "bash")
    ])
    expect(show.code).toBe(0)
    expect(show.stdout).toMatch(/^code {5}v01 {3}\d{4}-\d\d-\d\dT[\d:]+Z\nconfig {3}v02 {3}\d{4}-\d\d-\d\dT[\d:]+Z\n$/)
    expect(missing).toEqual({ code: 1, stdout: 'configuration "nope" not found\n', stderr: "" })
    expect(usage).toEqual({ code: 2, stdout: "", stderr: "deployctl: name should be set\n" })
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("Usage: deployctl ")
    expect(help.stdout).toContain("  -addr string\n")
    expect(help.stdout).not.toContain("\x1b[") // no colour codes off a terminal
    expect(completions.code).toBe(0)
    expect(completions.stdout).toContain("complete -F")
    // the uploaded blob is exactly the file
    const hash = sha256(await readFile(path.join(fx.work, "config_v2.tar.gz")))
    const comp = await fx.ctl("showcomp", "-name", "config", "-json")
    expect(JSON.parse(comp.stdout).Versions.map((v: { Hash: string }) => v.Hash)).toContain(hash)
  })

  it("an upload interrupted halfway leaves no version and nothing claimable", async () => {
    // 96 MiB of random data in a tar, gzip level 0 (stored): valid and fast to make.
    const bin = path.join(fx.work, "big.bin")
    const block = randomBytes(1024 * 1024)
    const out = createWriteStream(bin)
    for (let i = 0; i < 96; i++) if (!out.write(i % 2 ? block : Buffer.from(block).reverse())) await new Promise<void>((r) => out.once("drain", () => r()))
    await new Promise<void>((r) => out.end(() => r()))
    await run("tar", ["cf", path.join(fx.work, "big.tar"), "-C", fx.work, "big.bin"])
    const big = path.join(fx.work, "big.tar.gz")
    await pipeline(createReadStream(path.join(fx.work, "big.tar")), zlib.createGzip({ level: 0 }), createWriteStream(big))
    const total = (await stat(big)).size

    const bytes = await readFile(big)
    const uploads = path.join(fx.reg.dir, "uploads")
    // SIGINT: deployctl's own clean-up runs (it must not complete the upload); SIGKILL: the connection just drops.
    for (const [signal, status] of [["SIGINT", 130], ["SIGKILL", null]] as const) {
      const before = new Set(await readdir(uploads).catch(() => []))
      const { child, done } = fx.spawnCtl(["-key", fx.reg.operator.privatePath, "addver", "-name", "big", "-version", "v1", "-file", "big.tar.gz"], env())
      // wait until the registry holds part of the file, then interrupt deployctl
      let seen = 0
      for (let i = 0; i < 600 && seen === 0; i++) {
        await new Promise((r) => setTimeout(r, 25))
        for (const f of await readdir(uploads).catch(() => [])) {
          if (before.has(f)) continue
          const size = await stat(path.join(uploads, f)).then((st) => st.size, () => 0)
          if (size > 0 && size < total) seen = size
        }
      }
      expect(seen).toBeGreaterThan(0)
      child.kill(signal)
      expect((await done).code).toBe(status)
      expect((await fx.ctl("showcomp", "-name", "big")).code).toBe(1) // no version
      // neither the part we saw arrive nor the whole file can be claimed
      for (const h of [sha256(bytes.subarray(0, seen)), sha256(bytes)]) {
        expect((await fx.ssh(`addver -name big -version v1 -hash ${h}`)).stdout).toBe("no uploaded file with given hash found\n")
      }
    }
  })
})
