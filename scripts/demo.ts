// `npm run demo`: the whole story on one machine, in a temp directory, with the built programs.
// A registry with fresh keys; two components uploaded with deployctl; a configuration; an agent
// (poll 1 s) whose deploy script switches a `current` symlink; a version change deployed; a
// rollback deployed; everything stopped. Each step prints the command a user would type and is
// checked (the `current` symlink's target and contents after each deploy). Exit 0 only if every
// step worked; on any failure or Ctrl-C every child is killed and the temp directory removed.
// `--keep` leaves the directory for a look around.
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import * as tar from "tar"
import { configHash } from "../src/domain/ConfigHash.js"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const bin = {
  registry: path.join(repo, "dist/registry/main.js"),
  agent: path.join(repo, "dist/agent/main.js"),
  deployctl: path.join(repo, "dist/ctl/main.js")
}
const keep = process.argv.includes("--keep")
// For its test: the agent's hidden -jitter 0, so that no poll waits out up to 5 s of random delay.
const noJitter = process.argv.includes("--no-jitter") ? ["-jitter", "0"] : []
const STEP_TIMEOUT = 30_000

const say = (s: string) => process.stdout.write(`${s}\n`)
const indent = (text: string, prefix = "    ") =>
  text
    .trimEnd()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => prefix + l)
    .join("\n")

class DemoFailure extends Error {}
const fail = (message: string): never => {
  throw new DemoFailure(message)
}

let stepNo = 0
const step = (title: string) => say(`\n== ${++stepNo}. ${title}`)

// ---- child processes: every one is tracked so a failure can stop them all ----------------------

interface Service {
  readonly name: string
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}
const services = new Set<Service>()

const startService = (
  name: string,
  args: ReadonlyArray<string>,
  cwd: string,
  echo?: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env
): Service => {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  let partial = ""
  const onData = (b: Buffer) => {
    out += b.toString()
    if (!echo) return
    partial += b.toString()
    const lines = partial.split("\n")
    partial = lines.pop()!
    for (const l of lines) echo(l)
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : null))))
  const s: Service = { name, child, output: () => out, exited }
  services.add(s)
  void exited.then(() => services.delete(s))
  return s
}

const stopService = async (s: Service): Promise<number | null> => {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGTERM")
  const timer = setTimeout(() => s.child.kill("SIGKILL"), 10_000)
  const code = await s.exited
  clearTimeout(timer)
  return code
}

const killAll = async () => {
  for (const s of [...services]) s.child.kill("SIGKILL")
  await Promise.all([...services].map((s) => s.exited))
}

/** Polls `check` until it returns a value (not undefined) or the step times out. */
const waitFor = async <A>(what: string, check: () => Promise<A | undefined>, timeoutMs = STEP_TIMEOUT): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await check().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) return fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const run = promisify(execFile)

// ---- the story --------------------------------------------------------------------------------

const main = async (work: string) => {
  for (const [name, file] of Object.entries(bin)) {
    await fs.access(file).catch(() => fail(`${path.relative(repo, file)} is missing: run npm run build (deploy-${name} not built?)`))
  }
  const keys = path.join(work, "keys")
  const regDir = path.join(work, "registry")
  const agentDir = path.join(work, "agent")
  const project = path.join(work, "project1")
  await Promise.all([keys, regDir, agentDir, path.join(project, "code"), path.join(project, "config")].map((d) => fs.mkdir(d, { recursive: true })))

  step("keys for an operator and for the agent")
  for (const k of ["operator", "agent"]) {
    say(`$ ssh-keygen -t ed25519 -N '' -f keys/${k}`)
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${k}@demo`, "-f", path.join(keys, k)])
  }
  await fs.copyFile(path.join(keys, "operator.pub"), path.join(regDir, "operator.keys"))
  await fs.copyFile(path.join(keys, "agent.pub"), path.join(regDir, "service.keys"))
  say("$ cp keys/operator.pub registry/operator.keys; cp keys/agent.pub registry/service.keys")

  step("start the registry")
  say("$ deploy-registry -addr 127.0.0.1:0 -dir registry -opauth registry/operator.keys -srvauth registry/service.keys")
  const registry = startService(
    "registry",
    [bin.registry, "-addr", "127.0.0.1:0", "-dir", regDir, "-opauth", path.join(regDir, "operator.keys"), "-srvauth", path.join(regDir, "service.keys")],
    work
  )
  const { addr, fp } = await waitFor("the registry to listen", async () => {
    if (registry.child.exitCode !== null) fail(`the registry exited (${registry.child.exitCode}):\n${registry.output()}`)
    const m = /listening on (\S+:\d+)/.exec(registry.output())
    const f = /host key fingerprint: (SHA256:[A-Za-z0-9+/]+)/.exec(registry.output())
    return m && f ? { addr: m[1]!, fp: f[1]! } : undefined
  })
  say(indent(registry.output()))

  const env = { ...process.env, DEPLOYCTL_ADDR: addr, DEPLOYCTL_FINGERPRINT: fp, SSH_AUTH_SOCK: "" }
  const deployctl = async (args: ReadonlyArray<string>, expectCode = 0): Promise<string> => {
    say(`$ deployctl ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(" ")}`)
    const child = startService("deployctl", [bin.deployctl, "-key", path.join(keys, "operator"), ...args], work, undefined, env)
    const timer = setTimeout(() => child.child.kill("SIGKILL"), STEP_TIMEOUT)
    const code = await child.exited
    clearTimeout(timer)
    const out = child.output()
    if (out.trim() !== "") say(indent(out))
    if (code !== expectCode) fail(`deployctl ${args[0]} exited with ${code}, expected ${expectCode}`)
    return out
  }
  say(`$ export DEPLOYCTL_ADDR=${addr} DEPLOYCTL_FINGERPRINT=${fp}`)
  say("  (deployctl below also gets -key keys/operator; with ssh-agent running you would leave that out)")

  const blobs = new Map<string, string>()
  const pack = async (component: string, file: string, content: string, version: string) => {
    await fs.writeFile(path.join(project, component, file), content)
    const archive = path.join(work, `${component}_${version}.tar.gz`)
    say(`$ echo ${JSON.stringify(content.trim())} > project1/${component}/${file} && tar czf ${component}_${version}.tar.gz -C project1/${component} ${file}`)
    await tar.c({ gzip: true, file: archive, cwd: path.join(project, component), portable: true }, [file])
    blobs.set(`${component}:${version}`, createHash("sha256").update(await fs.readFile(archive)).digest("hex"))
    return path.basename(archive)
  }
  /** The configuration hash the registry must report for these layers (DESIGN.md), computed here. */
  const expectedHash = (...layers: Array<string>) => configHash(layers.map((l) => blobs.get(l) ?? fail(`no blob for ${l}`)))

  step("upload two components")
  await deployctl(["addver", "-name", "code", "-version", "v01", "-file", await pack("code", "program.txt", "program body v1\n", "v01")])
  await deployctl(["addver", "-name", "config", "-version", "v01", "-file", await pack("config", "config.txt", "config v1\n", "v01")])
  await deployctl(["components"])

  step("create a configuration of both")
  await deployctl(["addconf", "-name", "project1", "-layer", "code:v01", "-layer", "config:v01"])
  const shown = await deployctl(["showconf", "-name", "project1", "-v"])
  const v1 = expectedHash("code:v01", "config:v01")
  if (!shown.includes(v1)) fail(`showconf -v does not show the configuration hash ${v1}`)


  step("start an agent tracking project1; its deploy script switches the `current` symlink")
  const script = path.join(agentDir, "deploy.sh")
  await fs.writeFile(
    script,
    `#!/bin/sh
# Called by deploy-agent after it unpacked a new configuration into $NEWROOT.
set -eu
echo "deploy $NEWID (was \${OLDID:-nothing})"
i=0
while eval "n=\\\${LAYER_\${i}_NAME:-}"; [ -n "$n" ]; do
  eval "v=\\\$LAYER_\${i}_VERSION"
  echo "  layer $i: $n $v"
  i=$((i + 1))
done
cd "$(dirname "$0")"
# switch atomically: a new link, renamed over the old one (GNU mv -T; BSD/macOS mv -h)
ln -sfn "$NEWROOT" current.new
mv -fT current.new current 2>/dev/null || mv -fh current.new current
echo "current -> $NEWROOT"
`,
    { mode: 0o755 }
  )
  say(indent(await fs.readFile(script, "utf8"), "    agent/deploy.sh| "))
  say(`$ deploy-agent -addr ${addr} -fp ${fp} -key keys/agent -name project1 -dir agent -script agent/deploy.sh -state agent/state.json -poll 1s`)
  const agent = startService(
    "agent",
    [bin.agent, "-addr", addr, "-fp", fp, "-key", path.join(keys, "agent"), "-name", "project1", "-dir", agentDir,
      "-script", script, "-state", path.join(agentDir, "state.json"), "-poll", "1s", ...noJitter],
    work,
    (line) => say(`    agent| ${line}`)
  )

  const current = path.join(agentDir, "current")
  /** Waits for `current` to point at the tree of `hash` holding exactly `files`. */
  const expectDeployed = async (hash: string, files: Record<string, string>) => {
    const target = await waitFor(`the agent to deploy ${hash.slice(0, 12)}`, async () => {
      if (agent.child.exitCode !== null) fail(`the agent exited (${agent.child.exitCode})`)
      const t = await fs.readlink(current)
      return path.basename(t) === hash ? t : undefined
    })
    const root = path.resolve(agentDir, target)
    const names = (await fs.readdir(root)).sort()
    const got: Record<string, string> = {}
    for (const n of names) got[n] = await fs.readFile(path.join(root, n), "utf8")
    if (JSON.stringify(got) !== JSON.stringify(files)) {
      fail(`current -> ${target} holds ${JSON.stringify(got)}, expected ${JSON.stringify(files)}`)
    }
    say(`$ cat agent/current/*      # current -> ${path.relative(work, root)}`)
    say(indent(Object.values(got).join("")))
  }
  await expectDeployed(v1, { "config.txt": "config v1\n", "program.txt": "program body v1\n" })

  step("release a new config version; the agent deploys it within a poll")
  await deployctl(["addver", "-name", "config", "-version", "v02", "-file", await pack("config", "config.txt", "config v2\n", "v02")])
  await deployctl(["changeconf", "-name", "project1", "-component", "config", "-version", "v02"])
  const v2 = expectedHash("code:v01", "config:v02")
  await expectDeployed(v2, { "config.txt": "config v2\n", "program.txt": "program body v1\n" })

  step("roll back")
  await deployctl(["history", "-name", "project1"])
  await deployctl(["rollback", "-name", "project1"])
  await expectDeployed(v1, { "config.txt": "config v1\n", "program.txt": "program body v1\n" })

  step("stop everything")
  say("$ kill -TERM <agent> <registry>")
  const agentCode = await stopService(agent)
  const regCode = await stopService(registry)
  say(`    agent exited with ${agentCode}, registry exited with ${regCode}`)
  if (agentCode !== 0 && agentCode !== 130 && agentCode !== 143) fail(`the agent exited with ${agentCode}`)
  if (regCode !== 0 && regCode !== 130 && regCode !== 143) fail(`the registry exited with ${regCode}`)
}

const work = await fs.mkdtemp(path.join(os.tmpdir(), "deploy-demo-"))
let interrupted = false
const onSignal = () => {
  interrupted = true
  say("\ninterrupted: stopping everything")
  void killAll().then(async () => {
    if (!keep) await fs.rm(work, { recursive: true, force: true })
    process.exit(130)
  })
}
process.once("SIGINT", onSignal)
process.once("SIGTERM", onSignal)

let code = 0
try {
  say(`demo directory: ${work}`)
  await main(work)
  say("\ndemo finished: every step worked")
} catch (e) {
  code = 1
  if (!interrupted) {
    say(`\ndemo FAILED at step ${stepNo}: ${e instanceof DemoFailure ? e.message : (e as Error).stack ?? String(e)}`)
    for (const s of services) if (s.name !== "deployctl") say(`--- ${s.name} output:\n${indent(s.output())}`)
  }
} finally {
  await killAll()
  if (keep) say(`kept ${work}`)
  else await fs.rm(work, { recursive: true, force: true })
}
if (!interrupted) process.exit(code)
