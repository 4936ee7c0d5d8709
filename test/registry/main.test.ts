// deploy-registry as users run it: the BUILT program (`npm run build` first) on 127.0.0.1, driven by
// OpenSSH's ssh/sftp and by ssh2 clients.
import { createHash, randomBytes } from "node:crypto"
import { promises as fs } from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { keygenFingerprint, makeKey } from "../support/keys.js"
import { file, gz, pax, randomLayer, tar } from "../support/tar.js"
import {
  clientExec, clientSftp, connectClient, registryMain, runProgram, sftp, ssh, startRegistry, tempDir, type TestRegistry
} from "../support/registry.js"

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const cleanup: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const f of cleanup.reverse()) await f().catch(() => undefined)
})
const scratch = async (prefix: string) => {
  const d = await tempDir(prefix)
  cleanup.push(() => fs.rm(d, { recursive: true, force: true }))
  return d
}
const started = async (opts?: Parameters<typeof startRegistry>[0]) => {
  const reg = await startRegistry(opts)
  cleanup.push(async () => {
    await reg.stop("SIGKILL")
    await fs.rm(reg.dir, { recursive: true, force: true })
  })
  return reg
}
const p = <A>(f: (cb: (err: Error | null | undefined, a?: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((err, a) => (err ? reject(err) : resolve(a as A))))

/** tar.gz archives as the README makes them. */
const makeArchives = async (work: string) => {
  const src = path.join(work, "project1")
  await fs.mkdir(src, { recursive: true })
  await fs.writeFile(path.join(src, "program.txt"), "program body v1\n")
  await fs.writeFile(path.join(src, "config.txt"), "config v1\n")
  await runProgram("tar", ["czf", "code_v1.tar.gz", "-C", src, "program.txt"], { cwd: work })
  await runProgram("tar", ["czf", "config_v1.tar.gz", "-C", src, "config.txt"], { cwd: work })
  return {
    code: sha(await fs.readFile(path.join(work, "code_v1.tar.gz"))),
    config: sha(await fs.readFile(path.join(work, "config_v1.tar.gz")))
  }
}

describe("deploy-registry with OpenSSH clients", () => {
  let reg: TestRegistry
  let work: string
  let hashes: { code: string; config: string }
  beforeAll(async () => {
    reg = await started()
    work = await scratch("readme-")
    hashes = await makeArchives(work)
  })

  it("logs the host key fingerprint as ssh-keygen -lf shows it; host_key is 0600", async () => {
    const hostKey = path.join(reg.dir, "host_key")
    expect(reg.fingerprint).toBe(await keygenFingerprint(hostKey))
    expect(reg.log()).toContain(`host key fingerprint: ${reg.fingerprint}\n`)
    expect(reg.log()).toContain(`listening on 127.0.0.1:${reg.port}\n`)
    // Every line carries its time and level.
    expect(reg.log()).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z info listening on 127\\.0\\.0\\.1:${reg.port}$`, "m"))
    expect((await fs.stat(hostKey)).mode & 0o777).toBe(0o600)
  })

  it("runs the original README walkthrough", async () => {
    for (const f of ["code_v1.tar.gz", "config_v1.tar.gz"]) {
      const up = await sftp(reg, "127.0.0.1", { input: `put ${f}\n`, cwd: work })
      expect(up.code, up.stderr).toBe(0)
    }
    const addver = await ssh(reg, ["addver", "-name", "code", "-version", "v01", "-hash", hashes.code])
    expect(addver).toEqual({ stdout: "", stderr: "", code: 0 })
    expect((await ssh(reg, ["addver", "-name", "config", "-version", "v01", "-hash", hashes.config])).code).toBe(0)
    const showcomp = await ssh(reg, ["showcomp", "-name", "code"])
    expect(showcomp.stdout).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {3}v01\n$/)
    expect((await ssh(reg, ["addconf", "-name", "project1", "-layer", "code:v01", "-layer", "config:v01"])).code).toBe(0)
    const showconf = await ssh(reg, ["showconf", "-name", "project1"])
    expect(showconf.stdout).toMatch(/^code {5}v01 {3}\S+Z\nconfig {3}v01 {3}\S+Z\n$/)
    expect((await ssh(reg, ["configurations"])).stdout).toBe("project1\n")

    // an error: one line on stdout, exit 1, stderr empty
    const dup = await ssh(reg, ["addver", "-name", "code", "-version", "v01", "-hash", hashes.code])
    expect(dup).toEqual({ stdout: 'version "v01" already exists\n', stderr: "", code: 1 })

    // the agent's view
    const dl = await scratch("agent-dl-")
    const get = await sftp(reg, "deploy-agent@127.0.0.1:configs/project1.json", { key: reg.agent.privatePath, cwd: dl })
    expect(get.code, get.stderr).toBe(0)
    const doc = JSON.parse(await fs.readFile(path.join(dl, "project1.json"), "utf8"))
    expect(doc.Name).toBe("project1")
    expect(doc.Layers.map((l: { Name: string; Version: string; File: string; Hash: string }) => [l.Name, l.Version, l.File, l.Hash])).toEqual([
      ["code", "v01", `files/${hashes.code}`, hashes.code],
      ["config", "v01", `files/${hashes.config}`, hashes.config]
    ])
    expect(doc.Hash).toBe(sha(Buffer.from(`${hashes.code}\n${hashes.config}\n`)))
    const blob = await sftp(reg, `deploy-agent@127.0.0.1:files/${hashes.code}`, { key: reg.agent.privatePath, cwd: dl })
    expect(blob.code, blob.stderr).toBe(0)
    expect(sha(await fs.readFile(path.join(dl, hashes.code)))).toBe(hashes.code)
  })

  it("gives an interactive shell with a pty (ssh -tt) and a plain one without (no colour codes)", async () => {
    const tty = await ssh(reg, [], { extra: ["-tt"], input: "components\nshowcomp -name nosuch\nexit\n" })
    expect(tty.code).toBe(0)
    expect(tty.stdout).toContain("> ")
    expect(tty.stdout).toContain("code\r\nconfig\r\n")
    expect(tty.stdout).toContain('component "nosuch" not found')
    const plain = await ssh(reg, [], { extra: ["-T"], input: "components\nconfigurations\n" })
    expect(plain).toEqual({ stdout: "> code\nconfig\n> project1\n> \n", stderr: "", code: 0 })
  })

  it("refuses at addver, in one line, a layer an agent would refuse: zstd put with OpenSSH sftp, gzip(gzip(tar)), a PAX trick", async () => {
    const dir = await scratch("refused-")
    const layers = {
      // a zstd frame (magic, header, one raw block "hi"): what `zstd` makes of a tar, as far as any reader looks
      "zstd.tar.zst": Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x02, 0x11, 0x00, 0x00, 0x68, 0x69]),
      "double.tar.gz": gz(gz(tar(file("inner", "x")))),
      "trick.tar.gz": gz(tar(pax([["comment", "x\n13 path=evil\n"], ["path", "visible"]]), file("short", "x")))
    }
    const want = {
      "zstd.tar.zst": "layer code@v9: zstd-compressed; only gzip is accepted\n",
      "double.tar.gz": "layer code@v9: not a tar archive (a gzip stream inside the gzip)\n",
      "trick.tar.gz": "layer code@v9: PAX comment holds a newline\n"
    }
    for (const [name, bytes] of Object.entries(layers)) {
      await fs.writeFile(path.join(dir, name), bytes)
      const up = await sftp(reg, "127.0.0.1", { input: `put ${name}\n`, cwd: dir })
      expect(up.code, up.stderr).toBe(0)
      const r = await ssh(reg, ["addver", "-name", "code", "-version", "v9", "-hash", sha(bytes)])
      expect(r).toEqual({ stdout: want[name as keyof typeof want], stderr: "", code: 1 })
      expect(await fs.readdir(path.join(reg.dir, "uploads"))).toContain(sha(bytes)) // still there, as after any failed addver
    }
    expect((await ssh(reg, ["showcomp", "-name", "code"])).stdout).not.toContain("v9")
  })

  it("lists /configs in byte order (fault 11)", async () => {
    for (const name of ["b", "B", "a"]) {
      expect((await ssh(reg, ["addconf", "-name", name, "-layer", "code:v01"])).code).toBe(0)
    }
    const ls = await sftp(reg, "deploy-agent@127.0.0.1", { key: reg.agent.privatePath, input: "ls -1 configs\n" })
    expect(ls.stdout.split("\n").filter((l) => l.endsWith(".json")).map((l) => path.basename(l.trim()))).toEqual(
      ["B.json", "a.json", "b.json", "project1.json"]
    )
    // the data directory next to the view stays out of reach
    const dl = await scratch("tricks-")
    for (const trick of ["/files/../state.db", "/configs/../../host_key", "files/../host_key", "//configs/../state.db"]) {
      const r = await sftp(reg, "deploy-agent@127.0.0.1", { key: reg.agent.privatePath, cwd: dl, batch: true, input: `get ${trick} got\n` })
      expect(r.code, trick).not.toBe(0)
    }
    expect(await fs.readdir(dl)).toEqual([])
  })

  it("refuses wrong keys and roles; nothing changes", async () => {
    const before = (await ssh(reg, ["components"])).stdout
    const keys = await scratch("strangers-")
    const stranger = await makeKey(keys, "stranger")
    const denied = async (r: Promise<{ code: number | null; stderr: string }>) => {
      const x = await r
      expect(x.code).toBe(255)
      expect(x.stderr).toMatch(/Permission denied|denied|failed/i)
    }
    await denied(ssh(reg, ["components"], { key: stranger.privatePath }))
    await denied(ssh(reg, ["components"], { key: reg.agent.privatePath }))
    await denied(ssh(reg, ["components"], { user: "deploy-agent" }))
    // the agent key: no exec, no shell, no upload
    const exec = await ssh(reg, ["delconf", "-name", "project1", "-force"], { user: "deploy-agent", key: reg.agent.privatePath })
    expect(exec.code).not.toBe(0)
    const sh = await ssh(reg, [], { user: "deploy-agent", key: reg.agent.privatePath, extra: ["-T"], input: "delconf -name project1 -force\n" })
    expect(sh.code).not.toBe(0)
    const work2 = await scratch("agent-put-")
    await fs.writeFile(path.join(work2, "x.tar.gz"), "not really")
    const put = await sftp(reg, "deploy-agent@127.0.0.1", { key: reg.agent.privatePath, cwd: work2, batch: true, input: "put x.tar.gz\n" })
    expect(put.code).not.toBe(0)
    expect(await fs.readdir(path.join(reg.dir, "uploads"))).not.toContain(sha(Buffer.from("not really")))
    expect((await ssh(reg, ["components"])).stdout).toBe(before)
    expect((await ssh(reg, ["configurations"])).stdout).toContain("project1\n")
  })

  it("does the same through ssh2 clients, and a truncated upload leaves nothing (fault 9)", async () => {
    const data = randomLayer(2 * 1024 * 1024)
    const local = path.join(await scratch("ssh2-"), "data.bin")
    await fs.writeFile(local, data)
    const op = await connectClient(reg.port, "operator", { privateKeyPath: reg.operator.privatePath })
    try {
      const s = await clientSftp(op)
      await p<void>((cb) => s.fastPut(local, "ignored/name", (e) => cb(e)))
      expect(await clientExec(op, `addver -name blob -version v1 -hash ${sha(data)}`)).toEqual({ stdout: "", stderr: "", code: 0 })
      expect((await clientExec(op, "addconf -name p2 -layer blob:v1")).code).toBe(0)

      // a partial upload whose connection drops
      const part = randomBytes(100_000)
      const op2 = await connectClient(reg.port, "operator", { privateKeyPath: reg.operator.privatePath })
      const s2 = await clientSftp(op2)
      const h = await p<Buffer>((cb) => s2.open("partial", "w", cb))
      await p<void>((cb) => s2.write(h, part, 0, part.length, 0, (e) => cb(e)))
      op2.end()
      const r = await clientExec(op, `addver -name part -version v1 -hash ${sha(part)}`)
      expect(r).toEqual({ stdout: "no uploaded file with given hash found\n", stderr: "", code: 1 })
    } finally {
      op.end()
    }
    const agent = await connectClient(reg.port, "deploy-agent", { privateKeyPath: reg.agent.privatePath })
    try {
      const s = await clientSftp(agent)
      const doc = JSON.parse((await p<Buffer>((cb) => s.readFile("/configs/p2.json", cb))).toString())
      expect(doc.Layers[0].Hash).toBe(sha(data))
      expect(sha(await p<Buffer>((cb) => s.readFile(`/${doc.Layers[0].File}`, cb)))).toBe(sha(data))
    } finally {
      agent.end()
    }
    for (let i = 0; i < 100 && (await fs.readdir(path.join(reg.dir, "uploads"))).some((n) => n.startsWith(".")); i++) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect((await fs.readdir(path.join(reg.dir, "uploads"))).filter((n) => n.startsWith("."))).toEqual([])
  })

  it("serves 50 concurrent sessions mixing exec, uploads and agent reads", async () => {
    const jobs = Array.from({ length: 50 }, async (_, i) => {
      const kind = i % 3
      const c = await connectClient(reg.port, kind === 2 ? "deploy-agent" : "operator", {
        privateKeyPath: kind === 2 ? reg.agent.privatePath : reg.operator.privatePath
      })
      try {
        if (kind === 0) {
          const r = await clientExec(c, "showconf -name project1")
          return r.code === 0 && r.stdout.startsWith("code ")
        }
        if (kind === 1) {
          const data = randomLayer(64 * 1024 + i)
          const s = await clientSftp(c)
          await new Promise<void>((resolve, reject) => {
            const ws = s.createWriteStream(`/u${i}`)
            ws.on("close", () => resolve())
            ws.on("error", reject)
            ws.end(data)
          })
          const r = await clientExec(c, `addver -name conc -version v${i} -hash ${sha(data)}`)
          return r.code === 0
        }
        const s = await clientSftp(c)
        const doc = JSON.parse((await p<Buffer>((cb) => s.readFile("/configs/project1.json", cb))).toString())
        const blob = await p<Buffer>((cb) => s.readFile(`/${doc.Layers[0].File}`, cb))
        return sha(blob) === doc.Layers[0].Hash
      } finally {
        c.end()
      }
    })
    const results = await Promise.all(jobs)
    expect(results.every(Boolean)).toBe(true)
    const versions = (await ssh(reg, ["showcomp", "-name", "conc"])).stdout.trim().split("\n")
    expect(versions).toHaveLength(results.filter((_, i) => i % 3 === 1).length)
  })

  it("verify -dir checks a running registry's store", async () => {
    const r = await runProgram(process.execPath, [registryMain, "verify", "-dir", reg.dir])
    expect(r.code, r.stdout + r.stderr).toBe(0)
  })
})

describe("deploy-registry lifecycle", () => {
  it("SIGTERM during an upload and during execs: exit 0, acknowledged changes kept, no half-written files; a missing -dir is created 0700 (fault 11)", async () => {
    // The keys files beside it (authDir), so the registry itself makes -dir and its missing parent.
    const base = await scratch("lifecycle-dir-")
    const nested = path.join(base, "new", "registry")
    const reg = await started({ dir: nested, authDir: base })
    expect((await fs.stat(nested)).mode & 0o777).toBe(0o700)
    const work = await scratch("lifecycle-")
    const hashes = await makeArchives(work)
    expect((await sftp(reg, "127.0.0.1", { input: "put code_v1.tar.gz\n", cwd: work })).code).toBe(0)
    expect((await ssh(reg, ["addver", "-name", "code", "-version", "v01", "-hash", hashes.code])).code).toBe(0)

    // an upload left open, and a stream of changes, while the registry is told to stop
    const up = await connectClient(reg.port, "operator", { privateKeyPath: reg.operator.privatePath })
    up.on("error", () => undefined)
    const s = await clientSftp(up)
    const h = await p<Buffer>((cb) => s.open("open-upload", "w", cb))
    await p<void>((cb) => s.write(h, randomBytes(500_000), 0, 500_000, 0, (e) => cb(e)))
    const acknowledged: Array<string> = []
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const c = await connectClient(reg.port, "operator", { privateKeyPath: reg.operator.privatePath })
      c.on("error", () => undefined)
      for (let i = 0; ; i++) {
        const name = `c${w}-${i}`
        const r = await clientExec(c, `addconf -name ${name} -layer code:v01`).catch(() => undefined)
        if (r?.code !== 0) return
        acknowledged.push(name)
      }
    })
    while (acknowledged.length < 8) await new Promise((r) => setTimeout(r, 20))
    const code = await reg.stop("SIGTERM")
    await Promise.all(writers)
    expect(code).toBe(0)
    expect(acknowledged.length).toBeGreaterThan(0)

    const fingerprint = reg.fingerprint
    await reg.restart()
    expect(reg.log()).toContain(`host key fingerprint: ${fingerprint}`) // same key after restart
    const configs = (await ssh(reg, ["configurations"])).stdout.split("\n")
    for (const name of acknowledged) expect(configs).toContain(name)
    expect((await fs.readdir(path.join(reg.dir, "uploads"))).filter((n) => n.startsWith("."))).toEqual([])
    const verify = await ssh(reg, ["verify"])
    expect(verify.code, verify.stdout).toBe(0)
    expect(await reg.stop("SIGINT")).toBe(0)
  })

  it("fails to start with one line: usage (2), keys files, port in use (1)", async () => {
    const d = await scratch("startfail-")
    const keys = await makeKey(d, "op")
    const good = path.join(d, "good.keys")
    const empty = path.join(d, "empty.keys")
    await fs.writeFile(good, keys.publicLine + "\n")
    await fs.writeFile(empty, "# nobody\n")
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()))
    cleanup.push(() => new Promise((r) => blocker.close(() => r(undefined))))
    const busy = (blocker.address() as net.AddressInfo).port
    const start = (args: Array<string>) => runProgram(process.execPath, [registryMain, ...args], { timeoutMs: 30_000 })
    const base = (dir: string) => ["-addr", "127.0.0.1:0", "-dir", dir]
    const [usage, help, missing, noKeys, inUse] = await Promise.all([
      start(["-maxver", "many"]),
      start(["-h"]),
      start([...base(path.join(d, "r1")), "-opauth", path.join(d, "nope.keys"), "-srvauth", good]),
      start([...base(path.join(d, "r2")), "-opauth", good, "-srvauth", empty]),
      start(["-addr", `127.0.0.1:${busy}`, "-dir", path.join(d, "r3"), "-opauth", good, "-srvauth", good])
    ])
    expect(usage.code).toBe(2)
    expect(usage.stderr).toBe('deploy-registry: invalid value "many" for flag -maxver: expected a whole number ≥ 1 (see deploy-registry -h)\n')
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('-addr string')
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe(`deploy-registry: cannot read -opauth keys file ${path.join(d, "nope.keys")}: ENOENT\n`)
    expect(noKeys.code).toBe(1)
    expect(noKeys.stderr).toBe(`deploy-registry: -srvauth keys file ${empty} has no keys; refusing to start\n`)
    expect(inUse.code).toBe(1)
    expect(inUse.stderr).toContain(`cannot listen on 127.0.0.1:${busy}: address already in use\n`)
    expect(inUse.stderr.trim().split("\n").at(-1)).toMatch(/^deploy-registry: /)
  })

  it("dev mode generates and trusts its own keys, says so, and prints working commands", async () => {
    const cwd = await scratch("devmode-")
    const child = (await import("node:child_process")).spawn(process.execPath, [registryMain, "-dev", "-addr", "127.0.0.1:0"], { cwd })
    let out = ""
    child.stdout.on("data", (b: Buffer) => (out += b.toString()))
    child.stderr.on("data", (b: Buffer) => (out += b.toString()))
    cleanup.push(async () => void child.kill("SIGKILL"))
    for (let i = 0; i < 900 && !out.includes("deploy-agent -addr") && child.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(out, out).toContain("dev registry ready")
    expect(out).toMatch(/trusting operator key SHA256:\S+ .*\(\.dev-registry\/operator\.keys\)/)
    expect(out).toMatch(/trusting agent key SHA256:\S+ .*\(\.dev-registry\/service\.keys\)/)
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]!
    const fp = /host key fingerprint: (SHA256:\S+)/.exec(out)![1]!
    expect(out).toContain(`ssh -p ${port} -i .dev-registry/operator_key 127.0.0.1 help`)
    expect(out).toContain(`export DEPLOYCTL_ADDR=127.0.0.1:${port} DEPLOYCTL_FINGERPRINT=${fp}`)
    const opFp = await keygenFingerprint(path.join(cwd, ".dev-registry/operator_key"))
    expect(out).toContain(`trusting operator key ${opFp}`)
    expect((await fs.stat(path.join(cwd, ".dev-registry/operator_key"))).mode & 0o777).toBe(0o600)
    const c = await connectClient(Number(port), "dev", { privateKeyPath: path.join(cwd, ".dev-registry/operator_key") })
    expect((await clientExec(c, "help")).code).toBe(0)
    c.end()
    child.kill("SIGTERM")
    const code = await new Promise((r) => child.once("exit", r))
    expect(code).toBe(0)
  })
})
