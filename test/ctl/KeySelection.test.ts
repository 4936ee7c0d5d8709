// Which key the BUILT deployctl and deploy-agent use (`npm run build` first), against a real registry:
// -key > $DEPLOYCTL_KEY > ssh-agent > ~/.ssh/id_ed25519, id_ecdsa, id_rsa; an OpenSSH certificate
// beside the key (or -cert); and a refused login that says which key, which user and what to do.
import { execFile } from "node:child_process"
import { copyFile, mkdir, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { agentMain } from "../support/agent.js"
import { makeKey, runProgram } from "../support/registry.js"
import type { KeyPair } from "../support/keys.js"
import { type Env, type Fixture, setup } from "./harness.js"

const run = promisify(execFile)
let fx: Fixture
let stranger: KeyPair
let ca: KeyPair
let keys: string

const env = (extra: Env = {}): Env => {
  const e: Env = { ...process.env, ...fx.baseEnv(), ...extra }
  delete e.SSH_AUTH_SOCK
  delete e.DEPLOYCTL_KEY
  return { ...e, ...extra }
}
const ctl = (e: Env, ...args: Array<string>) => fx.spawnCtl(args, e).done

beforeAll(async () => {
  fx = await setup({
    beforeStart: async (r) => {
      keys = path.join(r.keysDir, "more")
      await mkdir(keys)
      stranger = await makeKey(keys, "stranger")
      ca = await makeKey(keys, "ca", "ops-ca")
      await writeFile(path.join(r.dir, "operator.keys"), `${r.operator.publicLine}\ncert-authority ${ca.publicLine}\n`)
      await writeFile(path.join(r.dir, "service.keys"), `${r.agent.publicLine}\ncert-authority ${ca.publicLine}\n`)
    }
  })
}, 60_000)
afterAll(() => fx?.cleanup())

describe("deployctl's key", () => {
  it("DEPLOYCTL_KEY is used without -key, and -key wins over it", async () => {
    expect(await ctl(env({ DEPLOYCTL_KEY: fx.reg.operator.privatePath }), "components")).toMatchObject({ code: 0, stderr: "" })
    expect(await ctl(env({ DEPLOYCTL_KEY: stranger.privatePath }), "-key", fx.reg.operator.privatePath, "components")).toMatchObject({ code: 0 })
    const r = await ctl(env({ DEPLOYCTL_KEY: fx.reg.operator.privatePath }), "-key", stranger.privatePath, "components")
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(stranger.fingerprint)
  })

  it("falls back to ~/.ssh/id_ed25519 like ssh", async () => {
    const home = path.join(fx.work, "home-with-key")
    await mkdir(path.join(home, ".ssh"), { recursive: true })
    await copyFile(fx.reg.operator.privatePath, path.join(home, ".ssh", "id_ed25519"))
    expect(await ctl(env({ HOME: home }), "components")).toMatchObject({ code: 0, stderr: "" })
  })

  it("a refused key says which key, which user, and the next step", async () => {
    const r = await ctl(env({ USER: "root" }), "-key", stranger.privatePath, "components")
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      `deployctl: authentication to ${fx.reg.addr} as root failed: the registry refused key ${stranger.privatePath} (${stranger.fingerprint}): ` +
        `add its public key (${stranger.privatePath}.pub, or ssh-keygen -y -f ${stranger.privatePath}) to the registry's operator keys file (-opauth); ` +
        `a key from the agent keys file (-srvauth) logs in only as deploy-agent\n`
    )
  })

  it("no key anywhere: one line saying every way to give one", async () => {
    const r = await ctl(env(), "components")
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^deployctl: no key to log in with: pass -key FILE, set DEPLOYCTL_KEY, start ssh-agent/)
  })

  it("uses <key>-cert.pub beside the key, and -cert FILE", async () => {
    const k = await makeKey(keys, "certified")
    await run("ssh-keygen", ["-q", "-s", ca.privatePath, "-I", "ci", "-n", "operator", "-V", "-5m:+1h", k.publicPath])
    expect(await ctl(env(), "-key", k.privatePath, "components")).toMatchObject({ code: 0, stderr: "" })
    const elsewhere = path.join(fx.work, "elsewhere-cert.pub")
    await copyFile(`${k.privatePath}-cert.pub`, elsewhere)
    const k2 = await makeKey(keys, "certified2")
    await run("ssh-keygen", ["-q", "-s", ca.privatePath, "-I", "ci2", "-n", "operator", "-V", "-5m:+1h", k2.publicPath])
    await copyFile(`${k2.privatePath}-cert.pub`, path.join(fx.work, "k2-cert.pub"))
    await run("rm", [`${k2.privatePath}-cert.pub`])
    expect((await ctl(env(), "-key", k2.privatePath, "components")).code).toBe(1)
    expect(await ctl(env(), "-key", k2.privatePath, "-cert", path.join(fx.work, "k2-cert.pub"), "components")).toMatchObject({ code: 0 })
    // A certificate of another key is refused before connecting.
    const wrong = await ctl(env(), "-key", k2.privatePath, "-cert", elsewhere, "components")
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toContain("does not certify this key")
    expect(fx.reg.log()).toMatch(/operator "operator" SHA256:\S+ "cert \\"ci\\" serial 0 CA/)
  })

  it("an expired certificate is refused with the certificate named", async () => {
    const k = await makeKey(keys, "expired")
    await run("ssh-keygen", ["-q", "-s", ca.privatePath, "-I", "old", "-n", "operator", "-V", "20200101:20200102", k.publicPath])
    const r = await ctl(env(), "-key", k.privatePath, "components")
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`with certificate ${k.privatePath}-cert.pub`)
  })
})

describe("deploy-agent's key", () => {
  const agent = (args: ReadonlyArray<string>, home: string) =>
    runProgram(process.execPath, [agentMain, "-addr", fx.reg.addr, "-fp", fx.reg.fingerprint, "-name", "nothing-here", "-script", "",
      "-dir", path.join(home, "dir"), "-once", ...args], { env: { ...process.env, HOME: home }, cwd: home })

  it("without -key takes ~/.ssh/id_ed25519 and says so; a certificate beside it logs in as deploy-agent", async () => {
    const home = path.join(fx.work, "agent-home")
    await mkdir(path.join(home, ".ssh"), { recursive: true })
    const k = await makeKey(path.join(home, ".ssh"), "id_ed25519")
    await run("ssh-keygen", ["-q", "-s", ca.privatePath, "-I", "web1", "-n", "deploy-agent", "-V", "-5m:+1h", k.publicPath])
    const r = await agent([], home)
    expect(r.stderr).toContain(`key ${k.privatePath} (${k.fingerprint}, the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa) with certificate ${k.privatePath}-cert.pub`)
    // Logged in: the failure is about the configuration, not authentication.
    expect(r.stderr).not.toMatch(/authentication .* failed/)
    expect(fx.reg.log()).toMatch(/agent "deploy-agent" SHA256:\S+ "cert \\"web1\\" serial 0 CA/)
  })

  it("a refused agent key says to add it to the service keys", async () => {
    const home = path.join(fx.work, "agent-home2")
    await mkdir(home, { recursive: true })
    const r = await agent(["-key", stranger.privatePath], home)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`the registry refused key ${stranger.privatePath} (${stranger.fingerprint}, -key): add its public key to the registry's service keys file (-srvauth)`)
  })
})

