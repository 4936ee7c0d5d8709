// `npm run release` builds a tarball that runs on a server with only Node.js: unpacked into a temp
// directory far from the repository (no node_modules above it), each program starts from it, the
// registry opens its SQLite database and SSH host key (native modules), and install.sh links the
// programs into a bin directory.
import { execFile, spawn } from "node:child_process"
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, expect, it } from "vitest"
import { repoRoot } from "./support/registry.js"

const run = promisify(execFile)
let tmp: string
let unpacked: string
let tarball: string
const programs = { "deploy-registry": "registry", "deploy-agent": "agent", deployctl: "ctl", "deploy-from-docker": "docker" }
// Only node's own directory and the system's: nothing of the repository.
const env = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: os.tmpdir() }

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "release-"))
  await run(process.execPath, [path.join(repoRoot, "scripts/release.mjs"), "-out", path.join(tmp, "out")], { cwd: repoRoot, maxBuffer: 1 << 24 })
  const files = await readdir(path.join(tmp, "out"))
  tarball = path.join(tmp, "out", files.find((f) => f.endsWith("-linux-x64.tar.gz"))!)
  unpacked = path.join(tmp, "opt", "deploy-tools")
  await run("mkdir", ["-p", unpacked])
  await run("tar", ["xzf", tarball, "-C", unpacked])
}, 600_000)
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

it("comes with a sha256 checksum file that sha256sum -c accepts", async () => {
  const sum = await readFile(`${tarball}.sha256`, "utf8")
  expect(sum).toMatch(new RegExp(`^[0-9a-f]{64}  ${path.basename(tarball)}\\n$`))
  const r = await run("sha256sum", ["-c", path.basename(`${tarball}.sha256`)], { cwd: path.dirname(tarball) })
  expect(r.stdout).toContain(": OK")
})

it("runs each program's --version from the unpacked tree with node alone", async () => {
  for (const [name, dir] of Object.entries(programs)) {
    const r = await run(process.execPath, [path.join(unpacked, "dist", dir, "main.js"), "--version"], { cwd: tmp, env })
    expect(r.stdout).toMatch(new RegExp(`^${name} \\d+\\.\\d+\\.\\d+\\n$`))
  }
})

it("starts a registry from it (SQLite and SSH native modules load; the metrics exporter's bundle too)", async () => {
  const child = spawn(process.execPath, [path.join(unpacked, "dist/registry/main.js"), "-dev", "-addr", "127.0.0.1:0", "-dir", path.join(tmp, "data"), "-metrics", "127.0.0.1:0"], {
    cwd: tmp,
    env,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  child.stdout.on("data", (b: Buffer) => (out += b.toString()))
  child.stderr.on("data", (b: Buffer) => (out += b.toString()))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const deadline = Date.now() + 60_000
  const ready = () => out.includes("dev registry ready") && out.includes("metrics on http://")
  while (!ready() && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  const url = /metrics on (http:\/\/\S+)/.exec(out)?.[1]
  const metrics = url === undefined ? "" : await fetch(url).then((r) => r.text())
  child.kill("SIGTERM")
  await exited
  expect(out, out).toContain("dev registry ready")
  expect(out).toMatch(/host key fingerprint: SHA256:/)
  expect(metrics).toContain("# TYPE deploy_registry_connections_total counter")
})

it("install.sh links the four programs into BINDIR", async () => {
  const bin = path.join(tmp, "bin")
  const r = await run(path.join(unpacked, "install.sh"), [], { env: { ...env, BINDIR: bin } })
  for (const name of Object.keys(programs)) expect(r.stdout).toContain(`${name} `)
  const v = await run(path.join(bin, "deployctl"), ["--version"], { cwd: tmp, env })
  expect(v.stdout).toMatch(/^deployctl \d/)
})
