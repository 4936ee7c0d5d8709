import { it } from "@effect/vitest"
import { Effect, Either, Exit } from "effect"
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import ssh2 from "ssh2"
import { afterAll, beforeAll, describe, expect } from "vitest"
import { connectFirst, connectOperator, hostKeyPolicy, parseTarget } from "../../src/ssh/ClientConnect.js"
import { SshError } from "../../src/ssh/SshError.js"
import { fingerprint } from "../../src/ssh/Fingerprint.js"
import { exec } from "../../src/ssh/Exec.js"
import { type FakeServer, startFakeServer } from "./fakeServer.js"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

let server: FakeServer
let dir: string
let keyFile: string

beforeAll(async () => {
  server = await startFakeServer()
  dir = await mkdtemp(path.join(os.tmpdir(), "clientconnect-"))
  keyFile = path.join(dir, "id")
  await writeFile(keyFile, generateEd25519().private, { mode: 0o600 })
  await mkdir(path.join(dir, "home", ".ssh"), { recursive: true })
})
afterAll(async () => {
  await server.stop()
  await rm(dir, { recursive: true, force: true })
})

const keyLine = (blob: Buffer) => `ssh-ed25519 ${blob.toString("base64")}`
const otherBlob = () => {
  const k = ssh2.utils.parseKey(generateEd25519().public)
  return (Array.isArray(k) ? k[0]! : (k as ssh2.ParsedKey)).getPublicSSH()
}
const errorOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? (exit.cause as { error?: { _tag: string; message: string } }).error : undefined

describe("parseTarget", () => {
  it("checks the address and the fingerprint, accepting sha256: in any case", () => {
    const fp = fingerprint(Buffer.from("x"))
    const one = (host: string, port: number) => ({ host, port, addresses: [{ host, port }] })
    expect(parseTarget("127.0.0.1:2200", fp.replace("SHA256", "sha256"))).toEqual(Either.right({ ...one("127.0.0.1", 2200), fingerprint: fp }))
    expect(parseTarget("reg", "")).toEqual(Either.right({ ...one("reg", 2022), fingerprint: undefined }))
    const msg = (e: Either.Either<unknown, { message: string }>) => (Either.isLeft(e) ? e.left.message : "ok")
    expect(msg(parseTarget(undefined, undefined))).toBe("no registry address: pass -addr host:port or set DEPLOYCTL_ADDR")
    expect(msg(parseTarget("a:b:c", undefined))).toBe('invalid registry address "a:b:c": want host:port')
    expect(msg(parseTarget("reg:1", "SHA256:short"))).toMatch(/^invalid fingerprint "SHA256:short"/)
  })

  it("takes several addresses, comma-separated, in order", () => {
    expect(parseTarget("a:1,[::1]:2,c", undefined)).toEqual(
      Either.right({ host: "a", port: 1, fingerprint: undefined, addresses: [{ host: "a", port: 1 }, { host: "::1", port: 2 }, { host: "c", port: 2022 }] })
    )
    const msg = (e: Either.Either<unknown, { message: string }>) => (Either.isLeft(e) ? e.left.message : "ok")
    expect(msg(parseTarget("a:1,", undefined))).toBe('invalid registry address "a:1,": want host:port or host:port,host:port,…')
    expect(msg(parseTarget("a:1,b:x", undefined))).toBe('invalid registry address "a:1,b:x": want host:port or host:port,host:port,…')
  })
})

describe("hostKeyPolicy", () => {
  it.effect("known_hosts: trusted, mismatch and unknown, each with its message", () =>
    Effect.gen(function* () {
      const home = path.join(dir, "home")
      const good = otherBlob()
      yield* Effect.promise(() => writeFile(path.join(home, ".ssh", "known_hosts"), `[reg]:2200 ${keyLine(good)}\n`))
      const p = yield* hostKeyPolicy({ host: "reg", port: 2200, fingerprint: undefined }, home)
      expect(p.verifyHostKey(good)).toBe(true)
      expect(p.verifyHostKey(otherBlob())).toBe(false)
      expect(p.hostKeyRefused("SHA256:seen")).toMatch(/^host key mismatch for reg:2200: the registry presented SHA256:seen, which .*known_hosts does not list for \[reg\]:2200$/)
      const q = yield* hostKeyPolicy({ host: "elsewhere", port: 2200, fingerprint: undefined }, home)
      expect(q.verifyHostKey(good)).toBe(false)
      expect(q.hostKeyRefused("SHA256:seen")).toMatch(/^unknown host elsewhere:2200 \(key SHA256:seen\): not in .*; pass -fp/)
    })
  )

  it.effect("a pinned fingerprint is matched exactly", () =>
    Effect.gen(function* () {
      const blob = otherBlob()
      // as the user spelled it: sha256: works too
      const p = yield* hostKeyPolicy({ host: "reg", port: 1, fingerprint: fingerprint(blob).replace("SHA256:", "sha256:") }, "/nonexistent")
      expect(p.verifyHostKey(blob)).toBe(true)
      expect(p.verifyHostKey(otherBlob())).toBe(false)
      expect(p.hostKeyRefused("SHA256:x")).toBe(`host key mismatch for reg:1: the registry presented SHA256:x, expected ${fingerprint(blob)}`)
    })
  )
})

describe("connectFirst", () => {
  const addrs = [1, 2, 3].map((port) => ({ host: "h", port }))
  const fail = (reason: SshError["reason"], port: number) => Effect.fail(new SshError({ reason, message: `m${port}` }))

  it.effect("moves on after a connection failure only, from the start index, wrapping around", () =>
    Effect.gen(function* () {
      const tried: Array<number> = []
      const r = yield* connectFirst(addrs, 2, (a) => (tried.push(a.port), a.port === 2 ? Effect.succeed("ok") : fail("Connect", a.port)))
      expect(r).toEqual(["ok", 1])
      expect(tried).toEqual([3, 1, 2])
      const stop: Array<number> = []
      const e = yield* Effect.flip(connectFirst(addrs, 0, (a) => (stop.push(a.port), fail(a.port === 1 ? "Connect" : "HostKey", a.port))))
      expect(stop).toEqual([1, 2])
      expect(e).toMatchObject({ reason: "HostKey", message: "m2" })
    })
  )

  it.effect("one address fails with its own error; several name every failure", () =>
    Effect.gen(function* () {
      const single = yield* Effect.flip(connectFirst(addrs.slice(0, 1), 0, (a) => fail("Connect", a.port)))
      expect(single.message).toBe("m1")
      const all = yield* Effect.flip(connectFirst(addrs, 1, (a) => fail("Connect", a.port)))
      expect(all).toMatchObject({ reason: "Connect", message: "no registry address answered: m2; m3; m1" })
    })
  )
})

describe("connectOperator", () => {
  const base = () => ({ addr: `127.0.0.1:${server.port}`, keyFile, agentSocket: undefined, home: path.join(dir, "home"), username: "op" })

  it.scopedLive("connects with the pinned fingerprint and a key file", () =>
    Effect.gen(function* () {
      const client = yield* connectOperator({ ...base(), fp: fingerprint(server.hostKeyBlob) })
      expect((yield* exec(client, "echo hi")).stdout.toString()).toBe("hi\n")
    })
  )

  it.scopedLive("refuses another host key; usage problems fail before connecting", () =>
    Effect.gen(function* () {
      const wrong = yield* Effect.exit(connectOperator({ ...base(), fp: fingerprint(otherBlob()) }))
      expect(errorOf(wrong)).toMatchObject({ _tag: "SshError", message: expect.stringMatching(/^host key mismatch for 127\.0\.0\.1:/) })
      const unknown = yield* Effect.exit(connectOperator({ ...base(), fp: undefined }))
      expect(errorOf(unknown)?.message).toMatch(/^unknown host 127\.0\.0\.1:\d+ /)
      // A dead address first: the next one answers (deployctl tries them in order).
      const second = yield* connectOperator({ ...base(), addr: `127.0.0.1:1,127.0.0.1:${server.port}`, fp: fingerprint(server.hostKeyBlob) })
      expect((yield* exec(second, "echo hi")).stdout.toString()).toBe("hi\n")
      const noAddr = yield* Effect.exit(connectOperator({ ...base(), addr: "", fp: undefined }))
      expect(errorOf(noAddr)).toMatchObject({ _tag: "UsageError" })
      const noKey = yield* Effect.exit(connectOperator({ ...base(), keyFile: undefined, fp: undefined }))
      expect(errorOf(noKey)?.message).toMatch(/no key to log in with: pass -key FILE, set DEPLOYCTL_KEY, start ssh-agent/)
    })
  )
})
