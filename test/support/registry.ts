// Starts the BUILT registry (`npm run build` first) as a child process on 127.0.0.1 with a random port,
// with one operator key and one agent key trusted, and a known_hosts file pinning its host key.
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdir, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { readFileSync } from "node:fs"
import * as net from "node:net"
import ssh2 from "ssh2"
import type { Client, ClientChannel, ConnectConfig, SFTPWrapper } from "ssh2"
import { type KeyPair, loadKey, makeKey, tempDir } from "./keys.js"

const run = promisify(execFile)

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const registryMain = path.join(repoRoot, "dist/registry/main.js")

export interface TestRegistry {
  dir: string
  port: number
  /** "127.0.0.1:PORT" */
  addr: string
  /** SHA256:... */
  fingerprint: string
  operator: KeyPair
  agent: KeyPair
  /** path of a known_hosts file with a [127.0.0.1]:PORT entry */
  knownHosts: string
  /** OpenSSH options: -p PORT -i operator key -o UserKnownHostsFile=... -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes */
  sshArgs: string[]
  /** the registry's stderr+stdout so far */
  log: () => string
  /** sends the signal (SIGTERM by default) and resolves with the exit code */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
  /** same dir, same port */
  restart: () => Promise<void>
  /** sends the signal without waiting (SIGSTOP/SIGCONT: the registry paused, as an overloaded host would) */
  signal: (signal: NodeJS.Signals) => void
}

/**
 * `TEST_CHILD_CPU_PROF=DIR`: the built programs started here run with `--cpu-prof` into DIR (a measurement
 * aid: NODE_OPTIONS may not carry --cpu-prof). A registry told to die by SIGKILL gets SIGTERM instead then,
 * or it would write no profile.
 */
export const childNodeFlags = (): Array<string> =>
  process.env.TEST_CHILD_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.TEST_CHILD_CPU_PROF}`] : []

// Children still running when the test process exits are killed, so a failed test leaks nothing.
const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL")
})

interface Started {
  child: ChildProcess
  port: number
  fingerprint: string
  output: () => string
  exited: Promise<number | null>
}

const launch = (dir: string, authDir: string, addr: string, extraArgs: ReadonlyArray<string>): Promise<Started> =>
  new Promise((resolve, reject) => {
    const args = [registryMain, "-addr", addr, "-dir", dir, "-opauth", path.join(authDir, "operator.keys"),
      "-srvauth", path.join(authDir, "service.keys"), ...extraArgs]
    const child = spawn(process.execPath, [...childNodeFlags(), ...args], { stdio: ["ignore", "pipe", "pipe"] })
    live.add(child)
    let out = ""
    let done = false
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => {
      live.delete(child)
      res(code)
    }))
    const timer = setTimeout(() => fail(new Error(`registry did not start within 20 s:\n${out}`)), 20_000)
    const fail = (e: Error) => {
      if (done) return
      done = true
      clearTimeout(timer)
      child.kill("SIGKILL")
      reject(e)
    }
    const onData = (b: Buffer) => {
      out += b.toString()
      if (done) return
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out)
      const f = /host key fingerprint: (SHA256:[A-Za-z0-9+/]+)/.exec(out)
      if (m && f) {
        done = true
        clearTimeout(timer)
        resolve({ child, port: Number(m[1]), fingerprint: f[1]!, output: () => out, exited })
      }
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    void exited.then((code) => fail(new Error(`registry exited (${code}) before listening:\n${out}`)))
  })

/** What `beforeStart` gets: the directory of the keys files, its test-keys directory and the two keys trusted by default. */
export interface RegistrySetup {
  /** The data directory, or `authDir` when given: where operator.keys and service.keys are. */
  readonly dir: string
  readonly keysDir: string
  readonly operator: KeyPair
  readonly agent: KeyPair
}

/**
 * Spawns `node dist/registry/main.js -addr 127.0.0.1:0 -dir D -opauth D/operator.keys -srvauth D/service.keys`.
 * Keys live in D/test-keys (reused when D already has them). `beforeStart` runs once the default keys files
 * are written and before the first start (to trust more keys, say, without a restart). The caller stops it
 * and removes `dir`. With `authDir`, the keys and keys files live there instead (`-opauth`/`-srvauth` point
 * there), and a `dir` that does not exist is left for the registry to create.
 */
export const startRegistry = async (
  opts: { dir?: string; authDir?: string; extraArgs?: string[]; beforeStart?: (setup: RegistrySetup) => Promise<void> } = {}
): Promise<TestRegistry> => {
  const dir = opts.dir ?? (await tempDir("deploy-registry-"))
  const authDir = opts.authDir ?? dir
  const keysDir = path.join(authDir, "test-keys")
  await mkdir(keysDir, { recursive: true, mode: 0o700 })
  const operatorPath = path.join(keysDir, "operator")
  const agentPath = path.join(keysDir, "agent")
  const operator = existsSync(operatorPath) ? await loadKey(operatorPath) : await makeKey(keysDir, "operator", "operator@test")
  const agent = existsSync(agentPath) ? await loadKey(agentPath) : await makeKey(keysDir, "agent", "agent@test")
  if (!existsSync(path.join(authDir, "operator.keys"))) await writeFile(path.join(authDir, "operator.keys"), operator.publicLine + "\n")
  if (!existsSync(path.join(authDir, "service.keys"))) await writeFile(path.join(authDir, "service.keys"), agent.publicLine + "\n")
  const extra = opts.extraArgs ?? []
  await opts.beforeStart?.({ dir: authDir, keysDir, operator, agent })

  let current = await launch(dir, authDir, "127.0.0.1:0", extra)
  const port = current.port
  const hostKeyAt = extra.indexOf("-hostkey")
  const hostKeyFile = hostKeyAt >= 0 ? extra[hostKeyAt + 1]! : path.join(dir, "host_key")
  const { stdout: hostPub } = await run("ssh-keygen", ["-y", "-f", hostKeyFile])
  const knownHosts = path.join(keysDir, "known_hosts")
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub.trim().split(/\s+/).slice(0, 2).join(" ")}\n`)
  let previousLogs = ""

  const reg: TestRegistry = {
    dir,
    port,
    addr: `127.0.0.1:${port}`,
    fingerprint: current.fingerprint,
    operator,
    agent,
    knownHosts,
    sshArgs: ["-p", String(port), "-i", operator.privatePath, "-o", `UserKnownHostsFile=${knownHosts}`,
      "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"],
    log: () => previousLogs + current.output(),
    stop: async (signal = "SIGTERM") => {
      const sig = signal === "SIGKILL" && process.env.TEST_CHILD_CPU_PROF ? "SIGTERM" : signal
      if (current.child.exitCode === null && current.child.signalCode === null) current.child.kill(sig)
      return current.exited
    },
    restart: async () => {
      await reg.stop()
      previousLogs += current.output()
      current = await launch(dir, authDir, `127.0.0.1:${port}`, extra)
    },
    signal: (signal) => void current.child.kill(signal)
  }
  return reg
}

// --- client helpers for tests -------------------------------------------------------------------------

export interface RunResult {
  stdout: string
  stderr: string
  code: number | null
}

/** Runs a program (OpenSSH ssh/sftp, the built CLIs) with optional stdin; never rejects. */
export const runProgram = (
  cmd: string,
  args: ReadonlyArray<string>,
  opts: { input?: string | Buffer; cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}
): Promise<RunResult> =>
  new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] })
    live.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000)
    child.once("close", (code) => {
      clearTimeout(timer)
      live.delete(child)
      resolve({ stdout, stderr, code })
    })
    child.stdin!.on("error", () => undefined)
    child.stdin!.end(opts.input ?? "")
  })

/** `ssh <sshArgs> [user@]127.0.0.1 ...command` as the operator (or another key via extra -i first). */
export const ssh = (reg: TestRegistry, command: ReadonlyArray<string>, opts: { user?: string; key?: string; input?: string; extra?: string[] } = {}) =>
  runProgram("ssh", [
    ...(opts.key ? ["-i", opts.key] : []),
    ...(opts.extra ?? []),
    ...reg.sshArgs.filter((_, i, a) => !(opts.key && (a[i] === "-i" || a[i - 1] === "-i"))),
    `${opts.user ?? "operator"}@127.0.0.1`,
    ...command
  ], { input: opts.input ?? "" })

/** `sftp -P PORT ...` with the registry's known_hosts; `target` like "127.0.0.1" or "deploy-agent@127.0.0.1:configs/x.json". */
export const sftp = (reg: TestRegistry, target: string, opts: { key?: string; input?: string; cwd?: string; batch?: boolean } = {}) =>
  runProgram("sftp", [
    "-P", String(reg.port), "-i", opts.key ?? reg.operator.privatePath,
    "-o", `UserKnownHostsFile=${reg.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
    ...(opts.batch ? ["-b", "-"] : []),
    target
  ], { input: opts.input ?? "", ...(opts.cwd ? { cwd: opts.cwd } : {}) })

export { makeKey, tempDir }

/** An ssh2 client on 127.0.0.1:port (TCP_NODELAY, like ours); rejects on any error before "ready". */
export const connectClient = (port: number, username: string, auth: { privateKeyPath?: string } & Partial<ConnectConfig>): Promise<Client> =>
  new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port })
    sock.setNoDelay(true)
    sock.on("error", reject)
    const c = new ssh2.Client()
    c.once("ready", () => resolve(c))
    c.once("error", (e) => {
      sock.destroy()
      reject(e)
    })
    const { privateKeyPath, ...rest } = auth
    c.connect({
      sock,
      username,
      readyTimeout: 20_000,
      ...(privateKeyPath ? { privateKey: readFileSync(privateKeyPath) } : {}),
      ...rest
    })
  })

/** Runs one exec; collects stdout/stderr and the exit code (null when the server sent none). */
export const clientExec = (c: Client, command: string, stdin = ""): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    c.exec(command, (err: Error | undefined, ch: ClientChannel) => {
      if (err) return reject(err)
      let stdout = ""
      let stderr = ""
      let code: number | null = null
      ch.on("data", (b: Buffer) => (stdout += b.toString()))
      ch.stderr.on("data", (b: Buffer) => (stderr += b.toString()))
      ch.on("exit", (c2: number | null) => (code = c2))
      ch.on("close", () => resolve({ stdout, stderr, code }))
      ch.end(stdin)
    })
  })

export const clientSftp = (c: Client): Promise<SFTPWrapper> =>
  new Promise((resolve, reject) => c.sftp((err: Error | undefined, s: SFTPWrapper) => (err ? reject(err) : resolve(s))))
