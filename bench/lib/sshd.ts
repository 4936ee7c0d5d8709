// The reference server: a real OpenSSH sshd with its own config, host key and authorized_keys in a temp
// dir, on a free loopback port. Works as root (UsePAM no, StrictModes no, privilege separation dir made).
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdir, rm, writeFile } from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { makeKey, tempDir, type KeyPair } from "../../test/support/keys.js"
import { run, runOk, stopChild } from "./proc.js"

export const SSHD = "/usr/sbin/sshd"

/**
 * Makes sure /usr/sbin/sshd exists: installs openssh-server with apt-get when running as root,
 * otherwise fails with a message saying what to install.
 */
export const ensureSshd = async (log: (m: string) => void = console.error): Promise<void> => {
  if (existsSync(SSHD)) return
  const isRoot = process.getuid?.() === 0
  const hasApt = existsSync("/usr/bin/apt-get")
  if (!isRoot || !hasApt) {
    throw new Error(`${SSHD} not found: the benchmarks compare against OpenSSH's sshd; install it (e.g. \`apt-get install -y openssh-server\`) and rerun`)
  }
  log(`${SSHD} not found; installing openssh-server with apt-get ...`)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  let r = await run("apt-get", ["install", "-y", "-qq", "openssh-server"], { env })
  if (r.code !== 0) {
    await run("apt-get", ["update", "-qq"], { env })
    r = await run("apt-get", ["install", "-y", "-qq", "openssh-server"], { env })
  }
  if (r.code !== 0 || !existsSync(SSHD)) {
    throw new Error(`could not install openssh-server (apt-get exited ${r.code}): ${r.stderr.trim().split("\n").pop() ?? ""}`)
  }
}

/** A free TCP port on 127.0.0.1 (bound then released; the race is harmless for a benchmark). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

export interface Sshd {
  readonly dir: string
  readonly port: number
  readonly pid: number
  readonly user: string
  /** The client key authorized for `user`. */
  readonly clientKey: KeyPair
  readonly knownHosts: string
  readonly hostFingerprint: string
  /** Options for ssh/sftp (without the port flag, which differs: -p vs -P). */
  readonly clientOpts: string[]
  readonly log: () => string
  readonly stop: () => Promise<void>
}

export interface SshdOptions {
  /** Cipher forced on the server (`Ciphers`); clients should pass the same with -c. */
  readonly cipher: string
  /** Extra public key lines to authorize (e.g. the registry bench's operator key). */
  readonly extraAuthorized?: ReadonlyArray<string>
  /** Reuse an existing client key instead of making one. */
  readonly clientKey?: KeyPair
}

export const startSshd = async (opts: SshdOptions): Promise<Sshd> => {
  await ensureSshd()
  const dir = await tempDir("bench-sshd-")
  const user = os.userInfo().username
  if (process.getuid?.() === 0) await mkdir("/run/sshd", { recursive: true, mode: 0o755 })
  const hostKey = path.join(dir, "ssh_host_ed25519_key")
  await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "bench-sshd", "-f", hostKey])
  const clientKey = opts.clientKey ?? (await makeKey(dir, "client", "bench@client"))
  const authorized = path.join(dir, "authorized_keys")
  await writeFile(authorized, [clientKey.publicLine, ...(opts.extraAuthorized ?? [])].join("\n") + "\n", { mode: 0o600 })
  const port = await freePort()
  const config = path.join(dir, "sshd_config")
  await writeFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${authorized}`,
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "PermitRootLogin prohibit-password",
      `Ciphers ${opts.cipher}`,
      "Compression no",
      "UseDNS no",
      "Subsystem sftp internal-sftp",
      // The capacity benchmark opens many connections and channels at once.
      "MaxStartups 1000:100:1000",
      "MaxSessions 1000",
      "LogLevel ERROR",
      ""
    ].join("\n")
  )
  const check = await run(SSHD, ["-t", "-f", config])
  if (check.code !== 0) throw new Error(`sshd rejected its config: ${check.stderr.trim()}`)
  const child: ChildProcess = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "pipe", "pipe"] })
  let log = ""
  child.stdout!.on("data", (d: Buffer) => (log += d.toString()))
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()))
  await waitPort(port, child, () => log)
  const hostPub = (await runOk("ssh-keygen", ["-y", "-f", hostKey])).stdout.trim()
  const knownHosts = path.join(dir, "known_hosts")
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`)
  const fp = (await runOk("ssh-keygen", ["-lf", `${hostKey}.pub`])).stdout.split(/\s+/)[1] ?? ""
  return {
    dir,
    port,
    pid: child.pid!,
    user,
    clientKey,
    knownHosts,
    hostFingerprint: fp,
    clientOpts: clientOptions(clientKey.privatePath, knownHosts, opts.cipher),
    log: () => log,
    stop: async () => {
      await stopChild(child)
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** OpenSSH client options shared by ssh and sftp: pinned host key, one identity, batch mode, cipher. */
export const clientOptions = (identity: string, knownHosts: string, cipher: string): string[] => [
  "-i", identity,
  "-c", cipher,
  "-o", `UserKnownHostsFile=${knownHosts}`,
  "-o", "StrictHostKeyChecking=yes",
  "-o", "BatchMode=yes",
  "-o", "IdentitiesOnly=yes",
  "-o", "Compression=no",
  // ssh2 has no sntrup761; pin the same key exchange on every server so only the transfer differs.
  "-o", "KexAlgorithms=curve25519-sha256",
  "-o", "LogLevel=ERROR"
]

/** Waits until something accepts TCP connections on the port, or the child dies. */
export const waitPort = async (port: number, child: ChildProcess, log: () => string, timeoutMs = 15_000): Promise<void> => {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before listening: ${log().trim()}`)
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port })
      s.once("connect", () => {
        s.destroy()
        resolve(true)
      })
      s.once("error", () => resolve(false))
    })
    if (ok) return
    if (Date.now() > end) throw new Error(`server not listening on 127.0.0.1:${port} after ${timeoutMs} ms: ${log().trim()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}
