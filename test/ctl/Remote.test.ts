// Integration, in process: Cli.main with the live Remote (real SSH, real registry on 127.0.0.1),
// environment given through a ConfigProvider. Same code path as the built binary minus Node's
// start-up, which keeps this file fast; deployctl.test.ts runs the binary itself.
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeKey, tempDir } from "../support/keys.js"
import { type Env, type Fixture, run, setup, sha256 } from "./harness.js"

let fx: Fixture
let reg: Fixture["reg"]
let work: string
const baseEnv = () => fx.baseEnv()
const ctl = (...args: Array<string>) => fx.ctl(...args)
const ctlEnv = (env: Env, ...args: Array<string>) => fx.ctlEnv(env, ...args)
const ssh = (command: string) => fx.ssh(command)
const makeArchive = (name: string, files: Record<string, string>) => fx.makeArchive(name, files)

beforeAll(async () => {
  fx = await setup()
  reg = fx.reg
  work = fx.work
  for (const args of [
    ["addver", "-name", "code", "-version", "v01", "-file", "code_v1.tar.gz"],
    ["addver", "-name", "config", "-version", "v01", "-file", "config_v1.tar.gz"],
    ["addver", "-name", "config", "-version", "v02", "-file", "config_v2.tar.gz"],
    ["addconf", "-name", "project1", "-layer", "code:v01", "-layer", "config:v01"],
    ["changeconf", "-name", "project1", "-component", "config", "-version", "v02"]
  ]) {
    const r = await ctl(...args)
    if (r.code !== 0) throw new Error(`setup ${args.join(" ")}: ${JSON.stringify(r)}`)
  }
})
afterAll(() => fx?.cleanup())

describe("deployctl (in process) against a registry", () => {

  it("every subcommand passes the registry's output and status through", async () => {
    await makeArchive("code_v2.tar.gz", { "program.txt": "program body v2\n" })
    const added = await ctl("addver", "-name", "code", "-version", "v02", "-file", "code_v2.tar.gz")
    const h2 = sha256(await readFile(path.join(work, "code_v2.tar.gz")))
    expect(added).toEqual({ code: 0, stdout: `added code v02 sha256 ${h2} (${(await stat(path.join(work, "code_v2.tar.gz"))).size} bytes)\n`, stderr: "" })
    // an existing version is refused before anything is uploaded: one line, exit 1
    const again = await ctl("addver", "-name", "code", "-version", "v02", "-file", "code_v1.tar.gz")
    expect(again).toEqual({
      code: 1,
      stdout: "",
      stderr: `deployctl: component code already has version v02 (sha256 ${h2}); nothing uploaded: choose another -version (deployctl showcomp -name code lists them)\n`
    })
    const json = await ctl("addver", "-name", "jsoncomp", "-version", "v03", "-file", "code_v1.tar.gz", "-json")
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual({ Name: "jsoncomp", Version: "v03", Hash: sha256(await readFile(path.join(work, "code_v1.tar.gz"))), Size: expect.any(Number) })
    expect(JSON.parse((await ctl("addver", "-name", "jsoncomp", "-version", "v03", "-file", "code_v1.tar.gz", "-json")).stderr)).toEqual({
      error: expect.stringContaining("already has version v03")
    })
    expect((await ctl("delcomp", "-name", "jsoncomp")).code).toBe(0)
    const [components, configurations, showcomp, showconfV, help] = await Promise.all([
      ctl("components"),
      ctl("configurations", "-json"),
      ctl("showcomp", "-name=code"),
      ctl("showconf", "--name", "project1", "-v"),
      ctl("help")
    ])
    expect(components).toEqual({ code: 0, stdout: "code\nconfig\n", stderr: "" })
    expect(JSON.parse(configurations.stdout)).toEqual(["project1"])
    expect(showcomp.stdout).toMatch(/^\S+Z {3}v01\n\S+Z {3}v02\n$/)
    expect(showconfV.stdout).toMatch(/^Name:\tproject1\nMtime:\t\S+\nHash:\t[0-9a-f]{64}\n\ncode /)
    expect(help.stdout).toContain("changeconf")

    const bump = await ctl("bumpconf", "-name", "project1", "-component", "code")
    expect(bump.code).toBe(0)
    expect(bump.stdout).toBe('to roll back run:\tchangeconf -name="project1" -component="code" -version="v01"\n')
    const history = await ctl("history", "-name", "project1")
    expect(history.code).toBe(0)
    expect(history.stdout).toContain("code:v02")
    const rollback = await ctl("rollback", "-name", "project1")
    expect(rollback.code).toBe(0)
    expect((await ctl("showconf", "-name", "project1")).stdout).toMatch(/^code {5}v01 /)
    expect((await ctl("replaceconf", "-name", "project1", "-layer", "config:v02", "-layer", "code:v02")).code).toBe(0)
    expect((await ctl("showconf", "-name", "project1")).stdout).toMatch(/^config {3}v02 .*\ncode {5}v02 /)

    // failures: the registry's message on stdout, exit 1
    expect(await ctl("delver", "-name", "code", "-version", "v02")).toEqual({
      code: 1,
      stdout: 'version is used by configuration "project1"\n',
      stderr: ""
    })
    expect(await ctl("delconf", "-name", "project1")).toMatchObject({ code: 1, stdout: "Run command with -force flag to confirm removal\n" })
    expect(await ctl("showconf", "-name", "nope")).toMatchObject({ code: 1, stdout: 'configuration "nope" not found\n' })
    expect((await ctl("delver", "-name", "code", "-version", "v01")).code).toBe(0)
    expect((await ctl("verify")).code).toBe(0)
    expect((await ctl("delconf", "-name", "project1", "-force")).code).toBe(0)
    expect((await ctl("delcomp", "-name", "code")).code).toBe(0)
    expect((await ctl("components")).stdout).toBe("config\n")
  })

  it("names with spaces and quotes arrive intact (fault 7)", async () => {
    const comp = `it's "a b"`
    const conf = "p3 x"
    expect((await ctl("addver", "-name", comp, "-version", "v 1", "-file", "config_v1.tar.gz")).code).toBe(0)
    expect((await ctl("addver", "-name", "plain", "-version", "v1", "-file", "config_v2.tar.gz")).code).toBe(0)
    expect((await ctl("addconf", "-name", "p3", "-layer", "plain:v1")).code).toBe(0)
    expect((await ctl("addconf", "-name", conf, "-layer", `${comp}:v 1`)).code).toBe(0)
    const [a, b, c] = await Promise.all([ctl("showconf", "-name", conf), ctl("showconf", "-name=p3"), ctl("showcomp", `-name=${comp}`)])
    expect(a.stdout).toMatch(/^it's "a b" {3}v 1 {3}\S+Z\n$/)
    expect(b.stdout).toMatch(/^plain {3}v1 /)
    expect(c.stdout).toMatch(/^\S+Z {3}v 1\n$/)
    expect((await ctl("configurations")).stdout.split("\n")).toContain("p3 x")
    // shell metacharacters, upper case, non-ASCII and flag-like values are data, not syntax
    for (const name of ["PROJECT1", "é ü $HOME `id` \\n ;|&", "--help", "-v"]) {
      expect(await ctl("showconf", `-name=${name}`)).toEqual({ code: 1, stdout: `configuration "${name}" not found\n`, stderr: "" })
    }
  })

  it("accepts the fingerprint as SHA256: and sha256: (fault 10); a wrong one fails before any command", async () => {
    const lower = "sha256:" + reg.fingerprint.slice("SHA256:".length)
    const r1 = await ctlEnv({ ...baseEnv(), DEPLOYCTL_FINGERPRINT: lower }, "-key", reg.operator.privatePath, "components")
    expect(r1.code).toBe(0)
    const r2 = await ctl("-fp", reg.fingerprint, "components")
    expect(r2.code).toBe(0)
    expect(r2.stdout).toBe(r1.stdout)

    const wrong = "SHA256:" + "A".repeat(43)
    const bad = await ctl("-fp", wrong, "addconf", "-name", "mm", "-layer", "plain:v1")
    expect(bad.code).toBe(1)
    expect(bad.stdout).toBe("")
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toContain(reg.fingerprint) // the fingerprint seen
    expect(bad.stderr).toContain("mismatch")
    expect((await ctl("configurations")).stdout.split("\n")).not.toContain("mm")

    const malformed = await ctl("-fp", "SHA256:short", "components")
    expect(malformed.code).toBe(2)
  })

  it("without a fingerprint, ~/.ssh/known_hosts decides ([host]:port and hashed entries)", async () => {
    const noFp = (home: string) => {
      const env: Env = { ...baseEnv(), HOME: home }
      delete env.DEPLOYCTL_FINGERPRINT
      return env
    }
    const home = await tempDir("deployctl-kh-")
    try {
      await mkdir(path.join(home, ".ssh"))
      const kh = path.join(home, ".ssh", "known_hosts")
      // unknown host: no known_hosts at all
      const unknown = await ctlEnv(noFp(home), "-key", reg.operator.privatePath, "components")
      expect(unknown.code).toBe(1)
      expect(unknown.stderr).toContain("unknown host")
      expect(unknown.stderr).toContain(reg.fingerprint)
      // plain [127.0.0.1]:PORT entry
      await copyFile(reg.knownHosts, kh)
      expect((await ctlEnv(noFp(home), "-key", reg.operator.privatePath, "components")).code).toBe(0)
      // hashed
      await run("ssh-keygen", ["-H", "-f", kh])
      expect(await readFile(kh, "utf8")).not.toContain("127.0.0.1")
      expect((await ctlEnv(noFp(home), "-key", reg.operator.privatePath, "components")).code).toBe(0)
      // another key listed for this host: mismatch
      const other = await makeKey(home, "otherhost")
      await writeFile(kh, `[127.0.0.1]:${reg.port} ${other.publicLine}\n`)
      const mm = await ctlEnv(noFp(home), "-key", reg.operator.privatePath, "components")
      expect(mm.code).toBe(1)
      expect(mm.stderr).toContain("mismatch")
      expect(mm.stderr).toContain(reg.fingerprint)
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })

  it("a corrupt or non-gzip archive is refused and no version appears", async () => {
    const good = await readFile(path.join(work, "config_v1.tar.gz"))
    const corrupt = Buffer.from(good)
    corrupt.writeUInt32BE(0xdeadbeef, corrupt.length - 8) // bad CRC, found only at the end
    await writeFile(path.join(work, "corrupt.tar.gz"), corrupt)
    await writeFile(path.join(work, "text.tar.gz"), "not an archive\n")
    const uploads = path.join(reg.dir, "uploads")
    const before = new Set(await readdir(uploads))
    for (const file of ["corrupt.tar.gz", "text.tar.gz"]) {
      const r = await ctl("addver", "-name", "broken", "-version", "v1", "-file", file)
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("not a valid .tar.gz")
      expect(r.stdout).toBe("")
    }
    // the registry discarded what it had received of them (sent while the check ran; never CLOSEd)
    let left: Array<string> = []
    for (let i = 0; i < 100; i++) {
      left = (await readdir(uploads)).filter((n) => !before.has(n))
      if (left.length === 0) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(left).toEqual([])
    expect((await ctl("showcomp", "-name", "broken")).code).toBe(1)
    // and the bytes were never completed as an upload
    expect((await ssh(`addver -name broken -version v1 -hash ${sha256(corrupt)}`)).stdout).toBe("no uploaded file with given hash found\n")
  })

  it("usage errors exit 2 with one line saying what to type", async () => {
    const [noName, unknown, badFlag, extra, noAddr, badAddr, noFile] = await Promise.all([
      ctl("showconf"),
      ctl("nope"),
      ctl("showconf", "-hash", "x"),
      ctl("showconf", "-name", "p", "extra"),
      ctlEnv({ ...baseEnv(), DEPLOYCTL_ADDR: "" }, "-key", reg.operator.privatePath, "components"),
      ctl("-addr", "host:notaport", "components"),
      ctl("addver", "-name", "x", "-version", "v")
    ])
    expect(noName).toEqual({ code: 2, stdout: "", stderr: "deployctl: name should be set\n" })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toBe('deployctl: unknown command "nope" (deployctl help lists the commands)\n')
    expect(badFlag).toEqual({ code: 2, stdout: "", stderr: "deployctl: flag provided but not defined: -hash (showconf) (see deployctl showconf -h)\n" })
    expect(extra.code).toBe(2)
    expect(extra.stderr).toContain("extra")
    expect(noAddr.code).toBe(2)
    expect(noAddr.stderr).toContain("DEPLOYCTL_ADDR")
    expect(badAddr.code).toBe(2)
    expect(noFile).toMatchObject({ code: 2, stderr: "deployctl: name, version and file should all be set\n" })
  })

  it("help: deployctl -h, subcommand -h and the help command", async () => {
    const [top, sub, list] = await Promise.all([ctl("-h"), ctl("addver", "--help"), ctl("help")])
    expect(top.code).toBe(0)
    expect(top.stdout).toContain("  -addr string\n")
    expect(top.stdout).toContain("  -fp string\n")
    expect(top.stdout).toContain("showconf")
    expect(sub.code).toBe(0)
    expect(sub.stdout).toContain("  -file string\n")
    expect(sub.stdout).not.toContain("-hash")
    expect(list.stdout).toBe(top.stdout) // deployctl's own help, not the registry's command list
  })

  it("named registries from the configuration file: -r NAME; flag > environment > file", async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), "deployctl-conf-"))
    const file = path.join(home, ".config", "deploy-tools", "deployctl.toml")
    await mkdir(path.dirname(file), { recursive: true })
    await writeFile(
      file,
      `# deployctl's registries\n[registry.dev]\naddr = "${reg.addr}"  # the test registry\nfingerprint = "${reg.fingerprint}"\nkey = '${reg.operator.privatePath}'\n\n[registry."down"]\naddr = "127.0.0.1:1"\n`
    )
    const env = { HOME: home, USER: "operator" }
    expect(await ctlEnv(env, "-r", "dev", "components")).toMatchObject({ code: 0, stdout: expect.stringContaining("config\n") })
    // -addr beats -r's entry; DEPLOYCTL_ADDR beats the file's default
    expect((await ctlEnv(env, "-r", "dev", "-addr", "127.0.0.1:1", "components")).stderr).toContain("127.0.0.1:1")
    await writeFile(file, `default = "dev"\n` + (await readFile(file, "utf8")))
    expect((await ctlEnv(env, "components")).code).toBe(0)
    expect((await ctlEnv({ ...env, DEPLOYCTL_ADDR: "127.0.0.1:1" }, "components")).stderr).toContain("127.0.0.1:1")
    expect(await ctlEnv(env, "-r", "prod", "components")).toEqual({
      code: 2,
      stdout: "",
      stderr: `deployctl: -r prod: no [registry.prod] in ${file} (it has dev, down)\n`
    })
    await writeFile(file, `[registry.dev]\naddr = reg:2022\n`)
    expect((await ctlEnv(env, "components")).stderr).toBe(`deployctl: ${file}:2: the value of addr should be a string in double quotes, got reg:2022\n`)
    // XDG_CONFIG_HOME moves it
    expect((await ctlEnv({ ...env, XDG_CONFIG_HOME: path.join(home, "elsewhere") }, "-r", "dev", "components")).stderr).toContain(
      path.join(home, "elsewhere", "deploy-tools", "deployctl.toml")
    )
    await rm(home, { recursive: true, force: true })
  })

  it("a passphrase-protected key, or no key and no agent, is one clear line, exit 1", async () => {
    const locked = path.join(work, "locked")
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "pw", "-f", locked])
    const r = await ctlEnv(baseEnv(), "-key", locked, "components")
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toContain("passphrase")
    const none = await ctlEnv(baseEnv(), "components")
    expect(none.code).toBe(1)
    expect(none.stderr).toContain("SSH_AUTH_SOCK")
    const down = await ctlEnv({ ...baseEnv(), DEPLOYCTL_ADDR: "127.0.0.1:1" }, "-key", reg.operator.privatePath, "components")
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/^deployctl: cannot connect to 127\.0\.0\.1:1: .*\n$/)
  })
})
