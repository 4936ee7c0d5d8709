// The client matrix (issue 25, issue 13 point 1): SFTP clients nobody on this project wrote upload a layer to
// the built registry with their default settings and exit 0, `addver` finds each upload, and each client
// downloads the blob back through the agent view intact. A missing client is skipped here, and fails in CI.
// Big transfers (50 MB) in each direction with the clients that move them fastest: OpenSSH sftp puts and gets
// one, scp uploads one and downloads it once, rclone uploads one; every other transfer is a 4 MB layer (scp's
// five downloads in a row among them: SftpAgentView.test holds the reply-order class itself). Each 50 MB
// transfer cost the registry ~0.5 s of CPU.
//   OpenSSH sftp and scp, paramiko (/usr/bin/python3), asyncssh, Ruby net-sftp, curl, lftp, rclone,
//   ssh2-sftp-client. Folders: sftp put -r, scp -r, lftp mirror -R, rclone copy.
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { createInterface } from "node:readline"
import { gzipSync } from "node:zlib"
import SftpClient from "ssh2-sftp-client"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runProgram, ssh, startRegistry, tempDir, type RunResult, type TestRegistry } from "../support/registry.js"

const MiB = 1024 * 1024
const inCI = process.env.CI === "true"
const have = (bin: string, check?: ReadonlyArray<string>) => {
  try {
    execFileSync(bin, check ?? ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const PY = "/usr/bin/python3"
const available = {
  openssh: have("sftp", ["-h"]) || existsSync("/usr/bin/sftp"),
  paramiko: have(PY, ["-c", "import paramiko"]),
  asyncssh: have(PY, ["-c", "import asyncssh"]),
  netsftp: have("ruby", ["-e", "require 'net/sftp'"]),
  curl: have("curl", ["-V"]) && /\bsftp\b/.test(safe(() => execFileSync("curl", ["-V"]).toString())),
  lftp: have("lftp", ["--version"]),
  rclone: have("rclone", ["version"])
}
function safe(f: () => string) {
  try {
    return f()
  } catch {
    return ""
  }
}
/** A client's case: skipped when its program is missing, except in CI, where that fails. */
const clientIt = (name: string, ok: boolean, f: () => Promise<void>, timeout = 120_000) =>
  ok || inCI ? it(name, async () => {
    expect(ok, `${name}: client not installed`).toBe(true)
    await f()
  }, timeout) : it.skip(`${name} (not installed)`, f)

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

let reg: TestRegistry
let work: string
let base50: string
let base4: string
let serial = 0
/**
 * A fresh, valid tar.gz: GNU tar's archive of the shared random file plus a unique one (so each hash is
 * new), gzipped at level 0. The data is random, so `tar czf` made the same size of stored blocks, but
 * spent 2 s of CPU per 50 MB layer trying to compress it.
 */
const layer = async (big: boolean): Promise<{ file: string; hash: string; size: number }> => {
  const n = ++serial
  const dir = path.join(work, `layer${n}`)
  await mkdir(dir)
  await writeFile(path.join(dir, "unique.txt"), `layer ${n} ${randomBytes(8).toString("hex")}\n`)
  const file = path.join(work, `layer${n}.tar.gz`)
  const archive = execFileSync("tar", ["cf", "-", "-C", dir, "unique.txt", "-C", path.dirname(big ? base50 : base4), path.basename(big ? base50 : base4)], { maxBuffer: 64 * MiB })
  const bytes = gzipSync(archive, { level: 0 })
  await writeFile(file, bytes)
  return { file, hash: sha(bytes), size: bytes.length }
}

const opts = () => ["-P", String(reg.port), "-o", `UserKnownHostsFile=${reg.knownHosts}`, "-o", "StrictHostKeyChecking=yes",
  "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]
const expectOk = (r: RunResult, what: string) => expect(r.code, `${what}\n${r.stdout}\n${r.stderr}`).toBe(0)
const addver = async (name: string, hash: string) => expectOk(await ssh(reg, ["addver", "-name", name, "-version", "v1", "-hash", hash]), `addver ${name}`)
const intact = async (file: string, hash: string) => expect(sha(await readFile(file)), file).toBe(hash)
const out = (name: string) => path.join(work, `down-${name}`)

beforeAll(async () => {
  reg = await startRegistry()
  work = await tempDir("clients-")
  base50 = path.join(work, "base50", "data.bin")
  base4 = path.join(work, "base4", "data.bin")
  await mkdir(path.dirname(base50))
  await mkdir(path.dirname(base4))
  await writeFile(base50, randomBytes(50 * MiB))
  await writeFile(base4, randomBytes(4 * MiB))
}, 60_000)
afterAll(async () => {
  py?.child.kill("SIGKILL")
  await reg?.stop()
  if (reg) await rm(reg.dir, { recursive: true, force: true })
  if (work) await rm(work, { recursive: true, force: true })
})

// paramiko and asyncssh jobs run in one python3 that reads them from stdin, one JSON line each, and answers
// each with one line: a python3 start with either library's imports cost ~0.25 s of CPU, ten times per run.
// A job that hangs (paramiko's pipelined uploads did, issue 25) kills that python3 at the timeout and fails.
const pyDriver = `
import sys, json, traceback, asyncio

def paramiko_job(mode, port, key, kh, user, local, remote):
    import paramiko
    c = paramiko.SSHClient(); c.load_host_keys(kh); c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect("127.0.0.1", int(port), username=user, key_filename=key, look_for_keys=False, allow_agent=False)
    s = c.open_sftp()
    if mode == "put": s.put(local, remote)
    elif mode == "put-noconfirm": s.put(local, remote, confirm=False)
    elif mode in ("w+", "wb"):
        f = s.open(remote, mode)
        if mode == "wb": f.set_pipelined(True)
        with open(local, "rb") as src:
            while True:
                b = src.read(32768)
                if not b: break
                f.write(b)
        f.close()
    elif mode == "get": s.get(remote, local)
    s.close(); c.close()

def asyncssh_job(mode, port, key, kh, user, local, remote):
    import asyncssh
    async def main():
        async with asyncssh.connect("127.0.0.1", int(port), username=user, client_keys=[key], known_hosts=kh) as conn:
            async with conn.start_sftp_client() as s:
                if mode == "put": await s.put(local, remote)
                else: await s.get(remote, local)
    asyncio.run(main())

jobs = {"paramiko": paramiko_job, "asyncssh": asyncssh_job}
for line in sys.stdin:
    job = json.loads(line)
    try:
        jobs[job["lib"]](*job["args"])
        reply = {"code": 0, "stderr": ""}
    except BaseException:
        reply = {"code": 1, "stderr": traceback.format_exc()}
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
`
let py: { readonly child: ChildProcess; readonly replies: Array<(r: RunResult) => void> } | undefined
const pyJob = (lib: "paramiko" | "asyncssh", mode: string, user: "operator" | "deploy-agent", local: string, remote: string): Promise<RunResult> => {
  if (py === undefined) {
    const child = spawn(PY, ["-c", pyDriver], { stdio: ["pipe", "pipe", "pipe"] })
    const started = { child, replies: [] as Array<(r: RunResult) => void> }
    let stderr = ""
    child.stderr.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-8000)))
    createInterface({ input: child.stdout }).on("line", (line) => {
      const r = JSON.parse(line) as { code: number; stderr: string }
      started.replies.shift()?.({ stdout: "", stderr: r.stderr, code: r.code })
    })
    child.once("exit", (code) => {
      if (py === started) py = undefined
      for (const reply of started.replies.splice(0)) reply({ stdout: "", stderr: `python3 exited (${code}):\n${stderr}`, code: null })
    })
    py = started
  }
  const { child, replies } = py
  const args = [mode, String(reg.port), user === "operator" ? reg.operator.privatePath : reg.agent.privatePath, reg.knownHosts, user, local, remote]
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 100_000)
    replies.push((r) => {
      clearTimeout(timer)
      resolve(r)
    })
    child.stdin!.write(JSON.stringify({ lib, args }) + "\n")
  })
}
const rbNetSftp = `
require "net/sftp"
mode, port, key, kh, user, local, remote = ARGV
Net::SFTP.start("127.0.0.1", user, port: port.to_i, keys: [key], keys_only: true, verify_host_key: :always,
  user_known_hosts_file: kh, global_known_hosts_file: "/dev/null", non_interactive: true) do |s|
  mode == "put" ? s.upload!(local, remote) : s.download!(remote, local)
end
`
const script = (interp: "ruby", code: string, mode: string, user: "operator" | "deploy-agent", local: string, remote: string) =>
  runProgram(interp, ["-e", code, "--", mode, String(reg.port),
    user === "operator" ? reg.operator.privatePath : reg.agent.privatePath, reg.knownHosts, user, local, remote], { timeoutMs: 100_000 })

/** rclone with default flags, configured on the command line (no config file). */
const rclone = (args: ReadonlyArray<string>, user: "operator" | "deploy-agent") =>
  runProgram("rclone", [...args, "--sftp-host", "127.0.0.1", "--sftp-port", String(reg.port), "--sftp-user", user,
    "--sftp-key-file", user === "operator" ? reg.operator.privatePath : reg.agent.privatePath,
    "--sftp-known-hosts-file", reg.knownHosts], { env: { ...process.env, RCLONE_CONFIG: "/dev/null" }, timeoutMs: 100_000 })

const lftp = (commands: string, user: "operator" | "deploy-agent") =>
  runProgram("lftp", ["-c", `set sftp:connect-program "ssh -a -x -i ${user === "operator" ? reg.operator.privatePath : reg.agent.privatePath} ${opts().slice(2).join(" ")}"; ` +
    `open -u ${user}, -p ${reg.port} sftp://127.0.0.1; ${commands}`], { timeoutMs: 100_000 })

const curl = (args: ReadonlyArray<string>, user: "operator" | "deploy-agent") => {
  const key = user === "operator" ? reg.operator.privatePath : reg.agent.privatePath
  return runProgram("curl", ["-sS", "--fail", "-u", `${user}:`, "--key", key, "--pubkey", `${key}.pub`,
    "--hostpubsha256", reg.fingerprint.replace(/^SHA256:/, ""), ...args], { timeoutMs: 100_000 })
}

describe("client matrix", () => {
  clientIt("OpenSSH sftp: put, addver, get", available.openssh, async () => {
    const l = await layer(true)
    expectOk(await runProgram("sftp", [...opts(), "-i", reg.operator.privatePath, "-b", "-", "operator@127.0.0.1"], { input: `put ${l.file} /sftp.tar.gz\n` }), "sftp put")
    await addver("c-sftp", l.hash)
    expectOk(await runProgram("sftp", [...opts(), "-i", reg.agent.privatePath, `deploy-agent@127.0.0.1:/files/${l.hash}`, out("sftp")]), "sftp get")
    await intact(out("sftp"), l.hash)
  })

  clientIt("OpenSSH scp (SFTP mode): upload, addver, download (a 4 MB layer five times in a row)", available.openssh, async () => {
    const big = await layer(true)
    const small = await layer(false)
    for (const [l, name] of [[big, "scp"], [small, "scp-small"]] as const) {
      expectOk(await runProgram("scp", [...opts(), "-i", reg.operator.privatePath, l.file, `operator@127.0.0.1:/${name}.tar.gz`]), `scp upload ${name}`)
      await addver(`c-${name}`, l.hash)
    }
    const download = async (l: { hash: string }, dest: string) => {
      expectOk(await runProgram("scp", [...opts(), "-i", reg.agent.privatePath, `deploy-agent@127.0.0.1:/files/${l.hash}`, dest]), `scp download ${dest}`)
      await intact(dest, l.hash)
    }
    await download(big, out("scp-big"))
    for (let i = 0; i < 5; i++) await download(small, out(`scp${i}`))
  })

  clientIt("OpenSSH sftp put -r and scp -r: a folder of layers", available.openssh, async () => {
    const dir = path.join(work, "folder-openssh")
    await mkdir(path.join(dir, "sub"), { recursive: true })
    const a = await layer(false)
    const b = await layer(false)
    await writeFile(path.join(dir, "a.tar.gz"), await readFile(a.file))
    await writeFile(path.join(dir, "sub", "b.tar.gz"), await readFile(b.file))
    expectOk(await runProgram("sftp", [...opts(), "-i", reg.operator.privatePath, "-b", "-", "operator@127.0.0.1"], { input: `put -r ${dir} /tree\n` }), "sftp put -r")
    await addver("c-sftp-r-a", a.hash)
    await addver("c-sftp-r-b", b.hash)
    const c = await layer(false)
    await writeFile(path.join(dir, "a.tar.gz"), await readFile(c.file))
    expectOk(await runProgram("scp", [...opts(), "-r", "-i", reg.operator.privatePath, dir, "operator@127.0.0.1:/tree2"]), "scp -r")
    await addver("c-scp-r", c.hash)
  })

  for (const mode of ["put", "put-noconfirm", "w+", "wb"] as const) {
    clientIt(`paramiko ${mode === "wb" ? "pipelined open('wb')" : mode === "w+" ? "open('w+')" : mode}`, available.paramiko, async () => {
      const l = await layer(false) // paramiko's pure-Python crypto takes ~10 s for 50 MB on 2 busy cores
      expectOk(await pyJob("paramiko", mode, "operator", l.file, `/paramiko-${mode}.tar.gz`), `paramiko ${mode}`)
      await addver(`c-paramiko-${mode.replace("+", "plus")}`, l.hash)
      expectOk(await pyJob("paramiko", "get", "deploy-agent", out(`paramiko-${mode}`), `/files/${l.hash}`), "paramiko get")
      await intact(out(`paramiko-${mode}`), l.hash)
    })
  }

  clientIt("asyncssh", available.asyncssh, async () => {
    const l = await layer(false)
    expectOk(await pyJob("asyncssh", "put", "operator", l.file, "/asyncssh.tar.gz"), "asyncssh put")
    await addver("c-asyncssh", l.hash)
    expectOk(await pyJob("asyncssh", "get", "deploy-agent", out("asyncssh"), `/files/${l.hash}`), "asyncssh get")
    await intact(out("asyncssh"), l.hash)
  })

  clientIt("Ruby net-sftp", available.netsftp, async () => {
    const l = await layer(false)
    expectOk(await script("ruby", rbNetSftp, "put", "operator", l.file, "/netsftp.tar.gz"), "net-sftp upload!")
    await addver("c-netsftp", l.hash)
    expectOk(await script("ruby", rbNetSftp, "get", "deploy-agent", out("netsftp"), `/files/${l.hash}`), "net-sftp download!")
    await intact(out("netsftp"), l.hash)
  })

  clientIt("curl sftp://", available.curl, async () => {
    const l = await layer(false)
    expectOk(await curl(["-T", l.file, `sftp://127.0.0.1:${reg.port}/curl.tar.gz`], "operator"), "curl -T")
    await addver("c-curl", l.hash)
    expectOk(await curl(["-o", out("curl"), `sftp://127.0.0.1:${reg.port}/files/${l.hash}`], "deploy-agent"), "curl get")
    await intact(out("curl"), l.hash)
  })

  clientIt("lftp: put, mirror -R, get", available.lftp, async () => {
    const l = await layer(false)
    expectOk(await lftp(`put ${l.file} -o /lftp.tar.gz`, "operator"), "lftp put")
    await addver("c-lftp", l.hash)
    const dir = path.join(work, "folder-lftp")
    await mkdir(dir)
    const m = await layer(false)
    await writeFile(path.join(dir, "m.tar.gz"), await readFile(m.file))
    expectOk(await lftp(`mirror -R ${dir} /mirrored`, "operator"), "lftp mirror -R")
    await addver("c-lftp-mirror", m.hash)
    expectOk(await lftp(`get /files/${l.hash} -o ${out("lftp")}`, "deploy-agent"), "lftp get")
    await intact(out("lftp"), l.hash)
  })

  clientIt("rclone (sftp backend, default flags): copyto, copy dir, download", available.rclone, async () => {
    const l = await layer(true)
    expectOk(await rclone(["copyto", l.file, ":sftp:/rclone.tar.gz"], "operator"), "rclone copyto")
    await addver("c-rclone", l.hash)
    const dir = path.join(work, "folder-rclone")
    await mkdir(dir)
    const m = await layer(false)
    await writeFile(path.join(dir, "m.tar.gz"), await readFile(m.file))
    expectOk(await rclone(["copy", dir, ":sftp:/rclone-dir"], "operator"), "rclone copy dir")
    await addver("c-rclone-dir", m.hash)
    // The 4 MB layer back: rclone's download is the same code path whatever the size.
    expectOk(await rclone(["copyto", `:sftp:/files/${m.hash}`, out("rclone")], "deploy-agent"), "rclone download")
    await intact(out("rclone"), m.hash)
  })

  it("ssh2-sftp-client: put, addver, fastGet", async () => {
    const l = await layer(false)
    const hostKey = readFileSync(reg.knownHosts, "utf8").trim().split(/\s+/)[2]!
    const connect = async (user: string, key: string) => {
      const c = new SftpClient()
      await c.connect({
        host: "127.0.0.1", port: reg.port, username: user, privateKey: readFileSync(key),
        hostVerifier: (k: Buffer) => k.toString("base64") === hostKey
      })
      return c
    }
    const up = await connect("operator", reg.operator.privatePath)
    await up.put(l.file, "/ssh2-sftp-client.tar.gz")
    await up.end()
    await addver("c-ssh2-sftp-client", l.hash)
    const down = await connect("deploy-agent", reg.agent.privatePath)
    await down.fastGet(`/files/${l.hash}`, out("ssh2-sftp-client"))
    await down.end()
    await intact(out("ssh2-sftp-client"), l.hash)
  }, 120_000)
})
