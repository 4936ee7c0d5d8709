// The registry under test, spawned from the built program (dist/registry/main.js) so that its pid is
// ours to sample (RSS, CPU) and node flags such as --cpu-prof can be added. Also runners for deployctl
// and the agent, and OpenSSH client options for talking to the registry.
import { spawn, type ChildProcess } from "node:child_process"
import { closeSync, existsSync, openSync, readFileSync } from "node:fs"
import { mkdir, readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { makeKey, tempDir, type KeyPair } from "../../test/support/keys.js"
import { run, runOk, stopChild, waitFor, type RunOptions, type RunResult } from "./proc.js"
import { clientOptions } from "./sshd.js"

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const dist = {
  registry: path.join(root, "dist/registry/main.js"),
  ctl: path.join(root, "dist/ctl/main.js"),
  agent: path.join(root, "dist/agent/main.js")
} as const

export const haveProgram = (p: keyof typeof dist): boolean => existsSync(dist[p])

export const requirePrograms = (...ps: Array<keyof typeof dist>): void => {
  const missing = ps.filter((p) => !haveProgram(p)).map((p) => dist[p])
  if (missing.length > 0) throw new Error(`not built: ${missing.join(", ")} (run \`npm run build\`)`)
}

export interface Registry {
  readonly dir: string
  readonly port: number
  readonly addr: string
  readonly pid: number
  readonly fingerprint: string
  readonly operator: KeyPair
  readonly agent: KeyPair
  readonly knownHosts: string
  /** ssh/sftp options for operator or deploy-agent access (add -p/-P PORT yourself). */
  readonly clientOpts: (who: "operator" | "agent") => string[]
  readonly log: () => string
  readonly stop: () => Promise<void>
}

export interface RegistryOptions {
  readonly cipher: string
  /** Extra node flags, e.g. ["--cpu-prof", "--cpu-prof-dir=/tmp/prof"]. */
  readonly nodeArgs?: ReadonlyArray<string>
  readonly extraArgs?: ReadonlyArray<string>
  /** Reuse this data directory (kept at stop) instead of a fresh one, e.g. to profile a restart on stored blobs. */
  readonly dataDir?: string
  /** The registry program to run (default dist/registry/main.js), e.g. another build for an A/B. */
  readonly program?: string
}

export const startRegistry = async (opts: RegistryOptions): Promise<Registry> => {
  requirePrograms("registry")
  const base = await tempDir("bench-registry-")
  const dir = opts.dataDir ?? path.join(base, "data")
  const keys = path.join(base, "keys")
  await mkdir(keys, { recursive: true })
  const operator = await makeKey(keys, "operator", "bench-operator")
  const agent = await makeKey(keys, "agent", "bench-agent")
  await writeFile(path.join(base, "operator.keys"), operator.publicLine + "\n")
  await writeFile(path.join(base, "service.keys"), agent.publicLine + "\n")
  const args = [
    ...(opts.nodeArgs ?? []),
    opts.program ?? dist.registry,
    "-addr", "127.0.0.1:0",
    "-dir", dir,
    "-opauth", path.join(base, "operator.keys"),
    "-srvauth", path.join(base, "service.keys"),
    ...(opts.extraArgs ?? [])
  ]
  // Its log goes to a file, as to journald in production: a pipe read by this (busy) process made each
  // synchronous log write of the registry wait for us, which showed up as registry CPU per handshake.
  const logFile = path.join(base, "registry.log")
  const fd = openSync(logFile, "a")
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", fd, fd] })
  closeSync(fd)
  const readLog = () => {
    try {
      return readFileSync(logFile, "utf8")
    } catch {
      return ""
    }
  }
  let exited: number | null | undefined
  child.once("exit", (code) => (exited = code))
  let port = 0
  let fingerprint = ""
  await waitFor("the registry to start", () => {
    const log = readLog()
    if (exited !== undefined) throw new Error(`registry exited ${exited} at start: ${log.trim()}`)
    const l = /listening on [^\s]*:(\d+)/.exec(log)
    const f = /host key fingerprint: (SHA256:[A-Za-z0-9+/]+)/.exec(log)
    if (!l || !f) return false
    port = Number(l[1])
    fingerprint = f[1]!
    return true
  })
  const knownHosts = path.join(base, "known_hosts")
  const hostPub = (await runOk("ssh-keygen", ["-y", "-f", path.join(dir, "host_key")])).stdout.trim()
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`)
  return {
    dir,
    port,
    addr: `127.0.0.1:${port}`,
    pid: child.pid!,
    fingerprint,
    operator,
    agent,
    knownHosts,
    clientOpts: (who) => clientOptions((who === "operator" ? operator : agent).privatePath, knownHosts, opts.cipher),
    log: readLog,
    stop: async () => {
      await stopChild(child)
      await rm(base, { recursive: true, force: true })
    }
  }
}

/** `deployctl -addr A -fp FP -key K <args>`; times the whole process. */
export const deployctl = (reg: Registry, args: ReadonlyArray<string>, opts: RunOptions = {}): Promise<RunResult> =>
  run(process.execPath, [dist.ctl, "-addr", reg.addr, "-fp", reg.fingerprint, "-key", reg.operator.privatePath, ...args], opts)

export const deployctlOk = async (reg: Registry, args: ReadonlyArray<string>): Promise<RunResult> => {
  const r = await deployctl(reg, args)
  if (r.code !== 0) throw new Error(`deployctl ${args.join(" ")} exited ${r.code}: ${(r.stdout + r.stderr).trim()}`)
  return r
}

/** One operator command over OpenSSH exec (for setup steps that must not depend on deployctl). */
export const sshExec = async (reg: Registry, command: string): Promise<RunResult> =>
  runOk("ssh", ["-p", String(reg.port), ...reg.clientOpts("operator"), "operator@127.0.0.1", command])

/** Uploads a file with OpenSSH sftp (operator) and records it as a version: setup without deployctl. */
export const addVersionViaSftp = async (reg: Registry, file: string, sha256: string, name: string, version: string): Promise<void> => {
  await runOk("sftp", ["-b", "-", "-P", String(reg.port), ...reg.clientOpts("operator"), "operator@127.0.0.1"], {
    input: `put ${file} upload.tar.gz\n`
  })
  const r = await run("ssh", ["-p", String(reg.port), ...reg.clientOpts("operator"), "operator@127.0.0.1", `addver -name ${name} -version ${version} -hash ${sha256}`])
  if (r.code !== 0) throw new Error(`addver ${name} ${version} failed: ${(r.stdout + r.stderr).trim()}`)
}

/** `deploy-agent ... -once` args for a configuration, into `dir`. */
export const agentArgs = (reg: Registry, name: string, dir: string, extra: ReadonlyArray<string> = []): string[] => [
  dist.agent,
  "-addr", reg.addr,
  "-name", name,
  "-key", reg.agent.privatePath,
  "-fp", reg.fingerprint,
  "-dir", dir,
  "-state", path.join(dir, "state.json"),
  ...extra
]

export const readText = (f: string): Promise<string> => readFile(f, "utf8")
