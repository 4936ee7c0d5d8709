// Scoped agent keys (configurations="…" in the service keys file) against the built registry: what each
// key sees over every SFTP request type, with ssh2, OpenSSH sftp and our agent. Needs `npm run build`.
import { promises as fs } from "node:fs"
import * as path from "node:path"
import type { Client, FileEntry, SFTPWrapper, Stats } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RECENT_STATES } from "../../src/registry/AgentScope.js"
import { tarGz } from "../agent/fixtures.js"
import { addVersion, run } from "../agent/operator.js"
import { agentMain } from "../support/agent.js"
import { type KeyPair, makeKey } from "../support/keys.js"
import { clientSftp, connectClient, runProgram, sftp, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"

const layer = (name: string) => tarGz([{ path: `${name}.txt`, content: `${name}\n` }])
const NO_SUCH_FILE = 2

let dir: string
let reg: TestRegistry
const keys: Record<"a" | "b", KeyPair> = {} as never
const clients: Array<Client> = []
const views: Record<"a" | "b" | "u", SFTPWrapper> = {} as never
/** Blob hashes: shared (p1 and p2), secret (only "secret"), web (web-1), p1[i] (state i+1 of p1). */
const h = { shared: "", secret: "", web: "", webPlain: "", p1: [] as Array<string> }
const P1_STATES = RECENT_STATES + 2

beforeAll(async () => {
  dir = await tempDir("agentscope-")
  const keysDir = path.join(dir, "test-keys")
  await fs.mkdir(keysDir, { recursive: true, mode: 0o700 })
  const unscoped = await makeKey(keysDir, "agent", "agent@test") // startRegistry reuses it
  keys.a = await makeKey(keysDir, "scoped-a", "a@test")
  keys.b = await makeKey(keysDir, "scoped-b", "b@test")
  await fs.writeFile(path.join(dir, "service.keys"), [
    `configurations="p1,web-*" ${keys.a.publicLine}`,
    `restrict,configurations="p2" ${keys.b.publicLine}`,
    unscoped.publicLine
  ].join("\n") + "\n")
  reg = await startRegistry({ dir })
  h.shared = await addVersion(reg, "shared", "v1", layer("shared"))
  h.secret = await addVersion(reg, "secretc", "v1", layer("secret"))
  h.web = await addVersion(reg, "webc", "v1", layer("web"))
  h.webPlain = await addVersion(reg, "webplain", "v1", layer("webplain"))
  for (let i = 1; i <= P1_STATES; i++) h.p1.push(await addVersion(reg, "p1code", `v${i}`, layer(`p1-${i}`)))
  await run(reg, "addconf -name p1 -layer shared:v1 -layer p1code:v1")
  for (let i = 2; i <= P1_STATES; i++) await run(reg, `changeconf -name p1 -component p1code -version v${i}`)
  await run(reg, "addconf -name p2 -layer shared:v1")
  await run(reg, "addconf -name secret -layer secretc:v1")
  await run(reg, "addconf -name web-1 -layer webc:v1")
  await run(reg, "addconf -name web -layer webplain:v1")
  for (const [who, key] of [["a", keys.a.privatePath], ["b", keys.b.privatePath], ["u", unscoped.privatePath]] as const) {
    const c = await connectClient(reg.port, "deploy-agent", { privateKeyPath: key })
    clients.push(c)
    views[who] = await clientSftp(c)
  }
}, 120_000)

afterAll(async () => {
  for (const c of clients) c.end()
  await reg?.stop()
  if (dir) await fs.rm(dir, { recursive: true, force: true })
})

const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))
const names = async (s: SFTPWrapper, d: string) => (await p<Array<FileEntry>>((cb) => s.readdir(d, cb))).map((e) => e.filename).sort()
/** The SFTP status code a request fails with, or "ok". */
const outcome = (f: (cb: (err: Error | null | undefined, a?: unknown) => void) => void) =>
  p(f).then(() => "ok", (e: { code?: number }) => e.code)

/** Every request that names a path, as one record: what a client learns about it. */
const probe = async (s: SFTPWrapper, file: string) => ({
  stat: await outcome((cb) => s.stat(file, cb)),
  lstat: await outcome((cb) => s.lstat(file, cb)),
  open: await outcome((cb) => s.open(file, "r", cb)),
  read: await outcome((cb) => s.readFile(file, cb))
})
const hidden = { stat: NO_SUCH_FILE, lstat: NO_SUCH_FILE, open: NO_SUCH_FILE, read: NO_SUCH_FILE }
const visible = { stat: "ok", lstat: "ok", open: "ok", read: "ok" }
const MISSING = "0".repeat(64)

describe("scoped agent keys", () => {
  it("OPENDIR /configs lists only the key's configurations", async () => {
    expect(await names(views.a, "/configs")).toEqual(["p1.json", "web-1.json"])
    expect(await names(views.b, "/configs")).toEqual(["p2.json"])
    expect(await names(views.u, "/configs")).toEqual(["p1.json", "p2.json", "secret.json", "web-1.json", "web.json"])
    expect(await names(views.a, "/")).toEqual(["configs", "files"])
  })

  it("OPENDIR /files lists only blobs of the key's configurations' recent states", async () => {
    const recent = h.p1.slice(-RECENT_STATES)
    expect(await names(views.a, "/files")).toEqual([h.shared, h.web, ...recent].sort())
    expect(await names(views.b, "/files")).toEqual([h.shared])
    expect(await names(views.u, "/files")).toEqual([h.shared, h.secret, h.web, h.webPlain, ...h.p1].sort())
  })

  it("another configuration's document is exactly as absent as one that does not exist", async () => {
    for (const name of ["secret", "p2", "web"]) expect(await probe(views.a, `/configs/${name}.json`), name).toEqual(hidden)
    expect(await probe(views.a, "/configs/nosuch.json")).toEqual(hidden)
    expect(await probe(views.b, "/configs/p1.json")).toEqual(hidden)
    for (const name of ["p1", "web-1"]) expect(await probe(views.a, `/configs/${name}.json`), name).toEqual(visible)
    for (const name of ["p1", "p2", "secret", "web", "web-1"]) expect(await probe(views.u, `/configs/${name}.json`), name).toEqual(visible)
    // Its signatures are as hidden as the document.
    expect(await probe(views.a, "/signatures/secret.json")).toEqual(hidden)
    expect(await probe(views.a, "/signatures/nosuch.json")).toEqual(hidden)
    expect(await probe(views.a, "/signatures/p1.json")).toEqual(visible)
    expect(await probe(views.u, "/signatures/secret.json")).toEqual(visible)
    // REALPATH only normalises: the same answer for a hidden name as for a missing one.
    const real = async (s: SFTPWrapper, f: string) => p<string>((cb) => s.realpath(f, cb))
    expect(await real(views.a, "configs/../configs/secret.json")).toBe("/configs/secret.json")
    expect(await real(views.a, "configs/../configs/nosuch.json")).toBe("/configs/nosuch.json")
  })

  it("a blob is readable only through an allowed configuration's recent states", async () => {
    // Shared by p1 (key a) and p2 (key b): both read it.
    expect(await probe(views.a, `/files/${h.shared}`)).toEqual(visible)
    expect(await probe(views.b, `/files/${h.shared}`)).toEqual(visible)
    // Only "secret" uses it; p1's oldest states are no longer recent; a hash nobody stored.
    for (const hash of [h.secret, h.webPlain, h.p1[0]!, h.p1[1]!, MISSING]) expect(await probe(views.a, `/files/${hash}`), hash).toEqual(hidden)
    for (const hash of [h.web, ...h.p1]) expect(await probe(views.b, `/files/${hash}`), hash).toEqual(hidden)
    for (const hash of h.p1.slice(-RECENT_STATES)) expect(await probe(views.a, `/files/${hash}`), hash).toEqual(visible)
    for (const hash of [h.secret, ...h.p1]) expect(await probe(views.u, `/files/${hash}`), hash).toEqual(visible)
    // Read and FSTAT on an allowed handle.
    const handle = await p<Buffer>((cb) => views.b.open(`/files/${h.shared}`, "r", cb))
    const st = await p<Stats>((cb) => views.b.fstat(handle, cb))
    const buf = Buffer.alloc(st.size)
    expect(await p<number>((cb) => views.b.read(handle, buf, 0, st.size, 0, cb))).toBe(st.size)
    expect(buf.equals(layer("shared"))).toBe(true)
    await p((cb) => views.b.close(handle, cb))
  })

  it("OpenSSH sftp sees the same view", async () => {
    const ls = (key: string) => sftp(reg, "deploy-agent@127.0.0.1", { key, batch: true, input: "ls -1 /configs\n" })
    const a = await ls(keys.a.privatePath)
    expect(a.code).toBe(0)
    expect(a.stdout.split("\n").filter((l) => l.endsWith(".json")).map((l) => path.basename(l.trim())).sort()).toEqual(["p1.json", "web-1.json"])
    const work = await tempDir("agentscope-sftp-")
    try {
      const get = (name: string) => sftp(reg, `deploy-agent@127.0.0.1:/configs/${name}.json`, { key: keys.a.privatePath, cwd: work })
      const secret = await get("secret")
      const nosuch = await get("nosuch")
      expect(secret.code).not.toBe(0)
      // What the server answered: the lines sftp prints for its replies, without OpenSSH's own "Connected to"
      // and "Connection closed." (printed or not, and in either order, as its exit races the close; a line may
      // come after a bare carriage return and end in spaces, as CI saw once).
      const answer = (stderr: string, name: string) =>
        stderr.replace(name, "NAME").split(/[\r\n]+/).map((l) => l.trim()).filter((l) => l !== "" && !/^(Connected to |Connection closed)/.test(l)).join("\n")
      expect(answer(secret.stderr, "secret"), `${secret.stderr}\n---\n${nosuch.stderr}`).toBe(answer(nosuch.stderr, "nosuch"))
      expect(answer(secret.stderr, "secret")).toContain('File "/configs/NAME.json" not found.')
      expect((await get("p1")).code).toBe(0)
      expect(JSON.parse(await fs.readFile(path.join(work, "p1.json"), "utf8")).Name).toBe("p1")
    } finally {
      await fs.rm(work, { recursive: true, force: true })
    }
  })

  it("our agent deploys an allowed configuration and finds no other", async () => {
    const agentRun = async (name: string) => {
      const work = await tempDir("agentscope-agent-")
      try {
        await fs.writeFile(path.join(work, "deploy.sh"), "#!/bin/sh\necho \"$NEWID\" > \"$(dirname \"$0\")/deployed\"\n", { mode: 0o755 })
        const r = await runProgram(process.execPath, [agentMain, "-once", "-addr", reg.addr, "-name", name, "-key", keys.a.privatePath,
          "-fp", reg.fingerprint, "-dir", work, "-script", path.join(work, "deploy.sh"), "-state", path.join(work, "state.json")], { cwd: work })
        const deployed = await fs.readFile(path.join(work, "deployed"), "utf8").catch(() => undefined)
        return { code: r.code, log: (r.stdout + r.stderr).replaceAll(work, "WORK").replaceAll(name, "NAME").replace(/^\S+ /gm, ""), deployed: deployed !== undefined }
      } finally {
        await fs.rm(work, { recursive: true, force: true })
      }
    }
    expect(await agentRun("p1")).toMatchObject({ code: 0, deployed: true })
    const secret = await agentRun("secret")
    expect(secret.deployed).toBe(false)
    expect(secret).toEqual(await agentRun("nosuch"))
  })

  it("a watch of a configuration outside the scope is answered as a missing one; its reports are not recorded, its changes not sent", async () => {
    const watchLines = async (name: string, report?: Record<string, unknown>) => {
      const c = await connectClient(reg.port, "deploy-agent", { privateKeyPath: keys.a.privatePath })
      clients.push(c)
      const ch = await new Promise<import("ssh2").ClientChannel>((res, rej) =>
        c.exec(`watch -name ${name} -host spy-host -version 1`, (err, ch) => (err ? rej(err) : res(ch))))
      let text = ""
      ch.on("data", (b: Buffer) => (text += b.toString()))
      const until = async (pred: () => boolean) => {
        for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 25))
      }
      await until(() => text.includes("\n"))
      if (report !== undefined) ch.write(`${JSON.stringify({ type: "report", report: { host: "spy-host", agentVersion: "1", configuration: name, hash: "", outcome: "failed", reason: "<b>x</b>", ...report } })}\n`)
      await run(reg, `changeconf -name secret -component secretc -version v1`).catch(() => "")
      await new Promise((r) => setTimeout(r, 300))
      c.end()
      return text.split("\n").filter((l) => l !== "" && !l.includes('"ping"')).map((l) => l.replace(name, "NAME"))
    }
    const hidden = await watchLines("secret", {})
    expect(hidden).toEqual(await watchLines("nosuch"))
    expect(hidden).toEqual(['{"type":"deleted","name":"NAME"}'])
    // The same key may watch what it may read, and is told its state.
    expect((await watchLines("p1"))[0]).toMatch(/^\{"type":"state","name":"NAME","hash":"[0-9a-f]{64}"/)
    // HostStatus writes are coalesced: wait for the allowed one to land, then the refused one has had its chance.
    await expect.poll(() => run(reg, "status -name p1"), { timeout: 10_000 }).toContain("spy-host")
    expect(await run(reg, "status -name secret")).not.toContain("spy-host")
  })
})
