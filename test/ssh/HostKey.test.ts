import { Effect } from "effect"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { loadFile, loadOrCreate } from "../../src/ssh/HostKey.js"
import { keygenFingerprint, tempDir } from "../support/keys.js"

const dirs: Array<string> = []
const fresh = async () => {
  const d = await tempDir("hostkey-")
  dirs.push(d)
  return d
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

describe("HostKey", () => {
  it("generates <dir>/host_key (0600) on first start, with the fingerprint ssh-keygen -lf prints", async () => {
    const dir = await fresh()
    const first = await Effect.runPromise(loadOrCreate(dir))
    expect(first.created).toBe(true)
    const file = path.join(dir, "host_key")
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600)
    expect(first.fingerprint).toBe(await keygenFingerprint(file))
    expect(first.publicLine).toMatch(/^ssh-ed25519 AAAA/)
    // no temp files left next to it
    expect(await fs.readdir(dir)).toEqual(["host_key"])
  })

  it("reuses an existing key", async () => {
    const dir = await fresh()
    const first = await Effect.runPromise(loadOrCreate(dir))
    const second = await Effect.runPromise(loadOrCreate(dir))
    expect(second.created).toBe(false)
    expect(second.fingerprint).toBe(first.fingerprint)
  })

  it("refuses a file that is not a private key, naming it", async () => {
    const dir = await fresh()
    await fs.writeFile(path.join(dir, "host_key"), "garbage\n", { mode: 0o600 })
    const err = await Effect.runPromise(Effect.flip(loadOrCreate(dir)))
    expect(err.message).toContain(path.join(dir, "host_key"))
  })

  it("fails with one line when the directory does not exist", async () => {
    const dir = path.join(await fresh(), "missing")
    const err = await Effect.runPromise(Effect.flip(loadOrCreate(dir)))
    expect(err.message).toMatch(/^cannot create host key .*missing\/host_key/)
  })

  it("-hostkey FILE: another registry's key is loaded as is, never generated when missing", async () => {
    const dir = await fresh()
    const first = await Effect.runPromise(loadOrCreate(dir))
    const shared = await Effect.runPromise(loadFile(path.join(dir, "host_key")))
    expect(shared.fingerprint).toBe(first.fingerprint)
    expect(shared.created).toBe(false)
    const missing = path.join(dir, "other_key")
    const err = await Effect.runPromise(Effect.flip(loadFile(missing)))
    expect(err.message).toBe(`host key ${missing} (-hostkey) does not exist: copy the key of the first replica there (or create one: ssh-keygen -t ed25519 -N '' -f ${missing})`)
    expect(await fs.readdir(dir)).toEqual(["host_key"])
  })
})
