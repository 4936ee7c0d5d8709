// Signed states end to end: deployctl sign (with -key, with ssh-agent, and a signature made by
// ssh-keygen over -print-message's text), -sign on a change, the registry's checks in addsig, history,
// and what an agent key reads at /signatures/<name>.json (verifies with ssh-keygen -Y verify).
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SignedState } from "../../src/domain/SignedState.js"
import { agentMain } from "../support/agent.js"
import { keygenFingerprint } from "../support/keys.js"
import { clientSftp, connectClient, runProgram } from "../support/registry.js"
import { type Env, type Fixture, run, setup } from "./harness.js"

let fx: Fixture
let agentSock: string
let agentPid: number | undefined
let opFp: string

beforeAll(async () => {
  fx = await setup()
  agentSock = path.join(fx.work, "agent.sock")
  const { stdout } = await run("ssh-agent", ["-s", "-a", agentSock])
  agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(stdout)?.[1])
  await run("ssh-add", ["-q", fx.reg.operator.privatePath], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } })
  opFp = await keygenFingerprint(fx.reg.operator.privatePath)
  for (const args of [
    ["addver", "-name", "code", "-version", "v01", "-file", "code_v1.tar.gz"],
    ["addver", "-name", "config", "-version", "v01", "-file", "config_v1.tar.gz"],
    ["addver", "-name", "config", "-version", "v02", "-file", "config_v2.tar.gz"],
    ["addconf", "-name", "p1", "-layer", "code:v01", "-layer", "config:v01"]
  ]) {
    const r = await fx.ctl(...args)
    if (r.code !== 0) throw new Error(`setup ${args.join(" ")}: ${JSON.stringify(r)}`)
  }
}, 60_000)

afterAll(async () => {
  if (agentPid) process.kill(agentPid, "SIGTERM")
  await fx?.cleanup()
})

const history = async () => JSON.parse((await fx.ctl("history", "-name", "p1", "-json")).stdout) as Array<{ Hash: string; Current: boolean; Signatures?: Array<{ Fingerprint: string; Time: string }> }>
const signaturesFile = async () => {
  const c = await connectClient(fx.reg.port, "deploy-agent", { privateKeyPath: fx.reg.agent.privatePath })
  try {
    const s = await clientSftp(c)
    return JSON.parse((await new Promise<Buffer>((res, rej) => s.readFile("/signatures/p1.json", (e, b) => (e ? rej(e) : res(b))))).toString()) as {
      Name: string; Hash: string; Signatures: Array<{ Time: string; Signature: string }>
    }
  } finally {
    c.end()
  }
}
/** `ssh-keygen -Y verify` of a served signature against the operator key as the only allowed signer. */
const opensshAccepts = async (doc: { Name: string; Hash: string }, sig: { Time: string; Signature: string }) => {
  const allowed = path.join(fx.work, "allowed_signers")
  await fs.writeFile(allowed, `ops ${fx.reg.operator.publicLine}\n`)
  const sigFile = path.join(fx.work, "served.sig")
  await fs.writeFile(sigFile, sig.Signature)
  const message = new SignedState({ name: doc.Name, hash: doc.Hash, time: new Date(sig.Time) }).message
  return (await runProgram("ssh-keygen", ["-Y", "verify", "-f", allowed, "-I", "ops", "-n", "deploy-tools", "-s", sigFile], { input: message })).code === 0
}

describe("signed states", () => {
  it("unsigned: /signatures/<name>.json lists none, history prints as before", async () => {
    const doc = await signaturesFile()
    expect(doc).toMatchObject({ Name: "p1", Signatures: [] })
    expect((await fx.ctl("history", "-name", "p1")).stdout).not.toMatch(/signed by/)
  })

  it("deployctl sign -key: one step; served beside the document; ssh-keygen verifies it; history names the signer", async () => {
    const r = await fx.ctl("sign", "-name", "p1")
    expect(r).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`signature by ${opFp.replace(/[+/]/g, "\\$&")} attached`)) })
    const doc = await signaturesFile()
    expect(doc.Signatures).toHaveLength(1)
    expect(await opensshAccepts(doc, doc.Signatures[0]!)).toBe(true)
    expect(await opensshAccepts({ ...doc, Hash: "0".repeat(64) }, doc.Signatures[0]!)).toBe(false)
    expect((await history())[0]).toMatchObject({ Current: true, Signatures: [{ Fingerprint: opFp }] })
    expect((await fx.ctl("history", "-name", "p1")).stdout.split("\n")[0]).toMatch(`signed by ${opFp}`)
  })

  it("-sign on changeconf signs the new state through ssh-agent", async () => {
    const e: Env = { ...fx.baseEnv(), SSH_AUTH_SOCK: agentSock }
    const r = await fx.ctlEnv(e, "changeconf", "-name", "p1", "-component", "config", "-version", "v02", "-sign")
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const [now, before] = await history()
    expect(now).toMatchObject({ Current: true, Signatures: [{ Fingerprint: opFp }] })
    expect(before!.Signatures).toHaveLength(1) // the old state keeps its own
    const doc = await signaturesFile()
    expect(doc.Hash).toBe(now!.Hash)
    expect(await opensshAccepts(doc, doc.Signatures[0]!)).toBe(true)
  })

  it("a signature made by ssh-keygen over -print-message's text is attached", async () => {
    const printed = await fx.ctl("sign", "-name", "p1", "-print-message")
    expect(printed.stdout).toMatch(/^deploy-tools signed configuration\nname: p1\nhash: [0-9a-f]{64}\ntime: \S+Z\n$/)
    const msg = path.join(fx.work, "p1.msg")
    await fs.writeFile(msg, printed.stdout)
    const other = path.join(fx.work, "other_ecdsa")
    await run("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", other])
    await run("ssh-keygen", ["-Y", "sign", "-f", other, "-n", "deploy-tools", msg])
    const r = await fx.ctl("sign", "-name", "p1", "-signature", `${msg}.sig`)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect((await signaturesFile()).Signatures).toHaveLength(2)
  })

  it("addsig refuses a bad signature, another hash, a stale time, the wrong namespace", async () => {
    const current = (await history())[0]!.Hash
    const attempt = async (state: SignedState, namespace = "deploy-tools", tamper = false) => {
      const msg = path.join(fx.work, `try-${Math.random().toString(36).slice(2)}`)
      await fs.writeFile(msg, state.message)
      await run("ssh-keygen", ["-Y", "sign", "-f", fx.reg.operator.privatePath, "-n", namespace, msg])
      if (tamper) await fs.writeFile(msg, state.message.replace("name: p1", "name: p2"))
      return fx.ctl("sign", "-name", tamper ? "p2" : "p1", "-signature", `${msg}.sig`)
    }
    const now = new Date(Math.floor(Date.now() / 1000) * 1000)
    expect((await attempt(new SignedState({ name: "p1", hash: "1".repeat(64), time: now }))).stdout).toMatch(/not the signed/)
    expect((await attempt(new SignedState({ name: "p1", hash: current, time: new Date(now.getTime() - 3600_000) }))).stdout).toMatch(/before the state was made/)
    expect((await attempt(new SignedState({ name: "p1", hash: current, time: now }), "file")).stdout).toMatch(/namespace/)
    expect((await attempt(new SignedState({ name: "p1", hash: current, time: now }), "deploy-tools", true)).stdout).toMatch(/bad signature|not found/)
    expect((await signaturesFile()).Signatures).toHaveLength(2)
  })

  it("the built agent with -trust deploys signed states only, and a rollback once it is signed anew", async () => {
    const work = await fs.mkdtemp(path.join(fx.work, "agent-"))
    const allowed = path.join(work, "allowed_signers")
    await fs.writeFile(allowed, `ops namespaces="deploy-tools" ${fx.reg.operator.publicLine}\n`)
    await fs.writeFile(path.join(work, "deploy.sh"), "#!/bin/sh\necho \"$NEWID\" > \"$(dirname \"$0\")/deployed\"\n", { mode: 0o755 })
    const agent = async () => {
      const r = await runProgram(process.execPath, [agentMain, "-once", "-jitter", "0", "-addr", fx.reg.addr, "-name", "p1", "-key", fx.reg.agent.privatePath,
        "-fp", fx.reg.fingerprint, "-dir", work, "-script", path.join(work, "deploy.sh"), "-trust", allowed], { cwd: work })
      return { code: r.code, log: r.stdout + r.stderr, deployed: (await fs.readFile(path.join(work, "deployed"), "utf8").catch(() => "")).trim() }
    }
    const signed = (await history())[0]!.Hash
    expect(await agent()).toMatchObject({ code: 0, deployed: signed, log: expect.stringMatching(/signed by ops/) })
    // A change nobody signed: refused, the agent stays.
    expect((await fx.ctl("changeconf", "-name", "p1", "-component", "config", "-version", "v01")).code).toBe(0)
    expect(await agent()).toMatchObject({ code: 1, deployed: signed, log: expect.stringMatching(/refused configuration p1 [0-9a-f]{64}: unsigned/) })
    // Signed now: deployed.
    const changed = (await history())[0]!.Hash
    expect((await fx.ctl("sign", "-name", "p1")).code).toBe(0)
    expect(await agent()).toMatchObject({ code: 0, deployed: changed })
    // Back to the first hash by rollback: a new state; the old state's signature does not carry over.
    expect((await fx.ctl("rollback", "-name", "p1")).code).toBe(0)
    expect((await history())[0]!.Hash).toBe(signed)
    expect(await agent()).toMatchObject({ code: 1, deployed: changed, log: expect.stringMatching(/: unsigned/) })
    expect((await fx.ctl("sign", "-name", "p1")).code).toBe(0)
    expect(await agent()).toMatchObject({ code: 0, deployed: signed })
  })
})
