// The built deploy-from-docker (node dist/docker/main.js) against a real registry: what an agent
// would download afterwards (configs/<name>.json and files/<hash> over SFTP) unpacks, in order, to
// the image's filesystem; a re-import changes nothing; a changed image uploads only what changed.
import { execFile, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { tempDir } from "../support/keys.js"
import { repoRoot, startRegistry, type TestRegistry } from "../support/registry.js"
import { classicSave, dir, extractInOrder, file, hardlink, ociSave, opaque, readTree, tarOf, whiteout } from "./fixtures.js"

const run = promisify(execFile)
const main = path.join(repoRoot, "dist/docker/main.js")

let reg: TestRegistry
let work: string
beforeAll(async () => {
  reg = await startRegistry()
  work = await tempDir("dfd-main-")
})
afterAll(async () => {
  await reg?.stop()
  if (reg) await fs.rm(reg.dir, { recursive: true, force: true })
  if (work) await fs.rm(work, { recursive: true, force: true })
})

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Pipes `archive` into the built program. */
const dfd = (archive: Buffer, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      env: { PATH: process.env.PATH, HOME: work, DEPLOY_TOOLS_CACHE: process.env.DEPLOY_TOOLS_CACHE, ...env },
      stdio: ["pipe", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
    child.stdin.on("error", () => {}) // the program may exit before reading everything
    child.once("error", reject)
    child.once("exit", (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(archive)
  })

const connect = () => ["-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath]

/** An operator command over OpenSSH. */
const ssh = async (command: string): Promise<string> => (await run("ssh", [...reg.sshArgs, "127.0.0.1", command])).stdout

// sftp -b - reads its batch from stdin
const sftpBatch = (batch: string) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn("sftp", ["-b", "-", "-P", String(reg.port), "-i", reg.agent.privatePath, "-o", `UserKnownHostsFile=${reg.knownHosts}`,
      "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "deploy-agent@127.0.0.1"],
      { stdio: ["pipe", "ignore", "pipe"] })
    let err = ""
    child.stderr.on("data", (b: Buffer) => (err += b.toString()))
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`sftp failed (${code}): ${err}`))))
    child.stdin.end(batch)
  })

/** Downloads a configuration as the agent would and unpacks its layers in order. */
const deployedTree = async (conf: string) => {
  const d = await fs.mkdtemp(path.join(work, "fetch-"))
  await sftpBatch(`get /configs/${conf}.json ${d}/conf.json\n`)
  const doc = JSON.parse(await fs.readFile(path.join(d, "conf.json"), "utf8")) as { Layers: Array<{ Name: string; Version: string; Hash: string }> }
  await sftpBatch(doc.Layers.map((l, i) => `get /files/${l.Hash} ${d}/${i}.tar.gz\n`).join(""))
  await extractInOrder(doc.Layers.map((_, i) => path.join(d, `${i}.tar.gz`)), path.join(d, "root"))
  return { layers: doc.Layers.map((l) => `${l.Name}:${l.Version}`), tree: await readTree(path.join(d, "root")) }
}
const base = tarOf([
  dir("etc"), file("etc/hosts", "h\n"), dir("etc/app"), file("etc/app/a.conf", "a\n"),
  dir("bin"), file("bin/tool", "tool\n", { mode: 0o755 })
])
const v1 = tarOf([dir("etc"), whiteout("etc/hosts"), dir("etc/app"), opaque("etc/app"), file("etc/app/b.conf", "b\n"), hardlink("bin/tool2", "bin/tool"), file("app", "v1\n")])
const v2 = tarOf([file("app", "v2\n")])

describe("deploy-from-docker (built) against a registry", () => {
  it("imports an image; the agent's view unpacks to the image's filesystem; re-import changes nothing", async () => {
    const first = await dfd(classicSave({ ref: "demo/app:1", layers: [base, v1], gzip: [1] }), connect())
    expect(first.stderr).toBe("")
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/demo\.app\.1\.l1 .*uploaded/)
    expect(first.stdout).toMatch(/configuration demo\.app\.1 created/)
    const got = await deployedTree("demo.app.1")
    expect(got.tree).toEqual({
      app: { type: "file", content: "v1\n" },
      bin: { type: "dir" },
      "bin/tool": { type: "file", content: "tool\n" },
      "bin/tool2": { type: "file", content: "tool\n" },
      etc: { type: "dir" },
      "etc/app": { type: "dir" },
      "etc/app/b.conf": { type: "file", content: "b\n" }
    })
    const historyBefore = JSON.parse(await ssh("history -name demo.app.1 -json")) as Array<unknown>
    const compsBefore = await ssh("components")

    // the same image again, saved in the OCI layout, through the environment variables
    const again = await dfd(ociSave({ ref: "demo/app:1", layers: [base, v1], gzip: [0] }), ["-key", reg.operator.privatePath], {
      DEPLOYCTL_ADDR: reg.addr,
      DEPLOYCTL_FINGERPRINT: reg.fingerprint.replace("SHA256:", "sha256:")
    })
    expect(again.code).toBe(0)
    expect(again.stdout).not.toMatch(/uploaded/)
    expect(again.stdout).toMatch(/configuration demo\.app\.1 unchanged/)
    expect(JSON.parse(await ssh("history -name demo.app.1 -json"))).toHaveLength(historyBefore.length)
    expect(await ssh("components")).toBe(compsBefore)
  })

  it("a changed image uploads only its changed layers and updates the configuration; -layer appends", async () => {
    const res = await dfd(classicSave({ ref: "demo/app:1", layers: [base, v2] }), connect())
    expect(res.code).toBe(0)
    expect(res.stdout).toMatch(/layer 1\/2 .*uploaded/) // nothing later deletes from it any more: a new version
    expect(res.stdout).toMatch(/configuration demo\.app\.1 updated/)
    const got = await deployedTree("demo.app.1")
    expect(got.tree["app"]).toEqual({ type: "file", content: "v2\n" })
    expect(got.tree["etc/hosts"]).toEqual({ type: "file", content: "h\n" })

    const extra = got.layers[1]!
    const named = await dfd(classicSave({ ref: undefined, layers: [base] }), [...connect(), "--name", "other", "-layer", extra])
    expect(named.code).toBe(0)
    expect((await deployedTree("other")).layers).toEqual([`other.l1:${got.layers[0]!.split(":")[1]}`, extra])
  })

  it("fails with one line: wrong host key (exit 1), bad flags (exit 2); nothing is created", async () => {
    const wrong = await dfd(classicSave({ ref: "bad:1", layers: [base] }), ["-addr", reg.addr, "-fp", `SHA256:${"A".repeat(43)}`, "-key", reg.operator.privatePath])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^deploy-from-docker: host key mismatch .*\n$/)
    const noAddr = await dfd(Buffer.alloc(0), ["-key", reg.operator.privatePath])
    expect(noAddr.code).toBe(2)
    expect(noAddr.stderr).toMatch(/^deploy-from-docker: no registry address.*\n$/)
    expect(await ssh("configurations")).not.toMatch(/bad/)
  })
})
