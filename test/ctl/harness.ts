// Shared by the deployctl integration tests: a registry with archives in a work dir, deployctl
// run in process (Cli.main + live Remote, environment through a ConfigProvider) or as the BUILT
// binary (`node dist/ctl/main.js`), and OpenSSH's ssh for commands that bypass deployctl.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { ConfigProvider, Console, Effect, Layer } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdir, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { main } from "../../src/ctl/Cli.js"
import { type Io, makeRemote, Remote } from "../../src/ctl/Remote.js"
import { tempDir } from "../support/keys.js"
import { type RegistrySetup, repoRoot, startRegistry, type TestRegistry } from "../support/registry.js"

export const run = promisify(execFile)
export const ctlMain = path.join(repoRoot, "dist/ctl/main.js")

export interface Result {
  code: number | null
  stdout: string
  stderr: string
}

export type Env = Record<string, string | undefined>

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

export interface Fixture {
  reg: TestRegistry
  /** holds the archives; deployctl's -file paths are relative to it */
  work: string
  /** a HOME without known_hosts */
  emptyHome: string
  /** DEPLOYCTL_ADDR and DEPLOYCTL_FINGERPRINT set, no agent, HOME = emptyHome */
  baseEnv: () => Env
  /** deployctl in process with this environment */
  ctlEnv: (env: Env, ...args: Array<string>) => Promise<Result>
  /** deployctl in process with -key (the operator key) and baseEnv */
  ctl: (...args: Array<string>) => Promise<Result>
  /** the built binary; `done` resolves when it exits */
  spawnCtl: (args: ReadonlyArray<string>, env: Env) => { child: ChildProcess; done: Promise<Result> }
  /** one registry command over OpenSSH's client */
  ssh: (command: string) => Promise<Result>
  makeArchive: (name: string, files: Record<string, string>) => Promise<void>
  cleanup: () => Promise<void>
}

/** `beforeStart`: as startRegistry's (trust more keys before the registry first starts). */
export const setup = async (opts: { beforeStart?: (setup: RegistrySetup) => Promise<void> } = {}): Promise<Fixture> => {
  const reg = await startRegistry(opts)
  const work = await tempDir("deployctl-work-")
  const emptyHome = await tempDir("deployctl-home-")
  const children = new Set<ChildProcess>()
  const baseEnv = (): Env => ({ HOME: emptyHome, USER: "operator", DEPLOYCTL_ADDR: reg.addr, DEPLOYCTL_FINGERPRINT: reg.fingerprint })

  const ctlEnv = async (env: Env, ...args: Array<string>): Promise<Result> => {
    let stdout = ""
    let stderr = ""
    const sink = (append: (s: string) => void) => ({
      write: (chunk: Uint8Array | string, cb?: (err?: Error | null) => void) => {
        append(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString())
        cb?.()
        return true
      }
    })
    const io: Io = { stdout: sink((s) => (stdout += s)), stderr: { isTTY: false, ...sink((s) => (stderr += s)) } }
    // @effect/cli and `help` print through Effect's Console: capture that too.
    const text = (a: ReadonlyArray<unknown>) => a.map(String).join(" ") + "\n"
    const console = await Effect.runPromise(
      Console.consoleWith((base) =>
        Effect.succeed<Console.Console>({
          ...base,
          log: (...a) => Effect.sync(() => void (stdout += text(a))),
          error: (...a) => Effect.sync(() => void (stderr += text(a))),
          unsafe: { ...base.unsafe, log: (...a) => void (stdout += text(a)), error: (...a) => void (stderr += text(a)) }
        })
      )
    )
    const provider = ConfigProvider.fromMap(new Map(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined)))
    const argv = args.map((a, i) => (args[i - 1] === "-file" ? path.resolve(work, a) : a))
    const code = await main(argv, io).pipe(
      Effect.withConsole(console),
      Effect.provide(Layer.succeed(Remote, makeRemote(io))),
      Effect.provide(NodeContext.layer),
      Effect.withConfigProvider(provider),
      Effect.runPromise
    )
    return { code, stdout, stderr }
  }

  const spawnCtl = (args: ReadonlyArray<string>, env: Env) => {
    const child = spawn(process.execPath, [ctlMain, ...args], { cwd: work, env: env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] })
    children.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()))
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()))
    const done = new Promise<Result>((resolve) =>
      child.once("close", (code) => {
        children.delete(child)
        resolve({ code, stdout, stderr })
      })
    )
    return { child, done }
  }

  const ssh = async (command: string): Promise<Result> => {
    try {
      const { stdout, stderr } = await run("ssh", [...reg.sshArgs, "127.0.0.1", command])
      return { code: 0, stdout, stderr }
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string }
      return { code: err.code, stdout: err.stdout, stderr: err.stderr }
    }
  }

  const makeArchive = async (name: string, files: Record<string, string>) => {
    const src = path.join(work, `src-${name}`)
    await mkdir(src, { recursive: true })
    for (const [f, content] of Object.entries(files)) await writeFile(path.join(src, f), content)
    await run("tar", ["czf", path.join(work, name), "-C", src, ...Object.keys(files)])
  }

  await makeArchive("code_v1.tar.gz", { "program.txt": "program body v1\n" })
  await makeArchive("config_v1.tar.gz", { "config.txt": "config v1\n" })
  await makeArchive("config_v2.tar.gz", { "config.txt": "config v2\n" })

  return {
    reg,
    work,
    emptyHome,
    baseEnv,
    ctlEnv,
    ctl: (...args) => ctlEnv(baseEnv(), "-key", reg.operator.privatePath, ...args),
    spawnCtl,
    ssh,
    makeArchive,
    cleanup: async () => {
      for (const c of children) c.kill("SIGKILL")
      await reg.stop()
      await Promise.all([work, emptyHome, reg.dir].map((d) => rm(d, { recursive: true, force: true })))
    }
  }
}
