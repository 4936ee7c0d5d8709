// The built registry end to end: an upload's layer check runs while it arrives (the hashing read-back,
// UploadHash.ts), and addver uses that verdict instead of reading the layer again. Shown by changing the
// staged file between the upload and addver, which a re-check would see (npm run build first).
import { randomBytes } from "node:crypto"
import { readdir, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { INLINE_MAX } from "../../src/fs/FileHasher.js"
import { sftp, ssh, startRegistry, tempDir, type TestRegistry } from "../support/registry.js"
import { sha256 } from "../support/layers.js"
import { file, gz, tar } from "../support/tar.js"

let reg: TestRegistry
let local: string
beforeAll(async () => {
  reg = await startRegistry()
  local = await tempDir("upload-verdict-")
})
afterAll(async () => {
  await reg?.stop()
  await rm(reg.dir, { recursive: true, force: true })
  await rm(local, { recursive: true, force: true })
})

const put = async (name: string, bytes: Buffer) => {
  await writeFile(path.join(local, name), bytes)
  const r = await sftp(reg, "127.0.0.1", { batch: true, cwd: local, input: `put ${name} x.tar.gz\n` })
  expect(r.code, r.stderr).toBe(0)
}

/** Overwrites the staged upload `hash` with bytes no check would accept. */
const spoil = async (hash: string) => {
  const staged = (await readdir(path.join(reg.dir, "uploads"))).filter((f) => f.includes(hash))
  expect(staged.length).toBeGreaterThan(0)
  for (const f of staged) await writeFile(path.join(reg.dir, "uploads", f), "not a layer at all")
}

describe("addver after an upload", () => {
  it("takes the verdict of the check made while the layer arrived, good or refused, and reads the layer no more", async () => {
    const good = gz(tar(file("a", randomBytes(INLINE_MAX)), file("b", "x")))
    await put("good.tar.gz", good)
    await spoil(sha256(good))
    const ok = await ssh(reg, ["addver", "-name", "app", "-version", "v1", "-hash", sha256(good)])
    expect(ok.stdout + ok.stderr).not.toContain("not gzip")
    expect(ok.code, ok.stdout + ok.stderr).toBe(0)

    const bad = gz(tar(file("a", randomBytes(INLINE_MAX)), file("../b", "x")))
    await put("bad.tar.gz", bad)
    await spoil(sha256(bad))
    const refused = await ssh(reg, ["addver", "-name", "app", "-version", "v2", "-hash", sha256(bad)])
    expect(refused.code).toBe(1)
    expect(refused.stdout + refused.stderr).toContain('layer app@v2: refused entry "../b": path contains a ".." component')
  })

  it("a small layer is checked at addver (no streamed verdict): the spoiled file is what it sees", async () => {
    const small = gz(tar(file("a", "small")))
    await put("small.tar.gz", small)
    await spoil(sha256(small))
    const r = await ssh(reg, ["addver", "-name", "small", "-version", "v1", "-hash", sha256(small)])
    expect(r.code).toBe(1)
    expect(r.stdout + r.stderr).toContain("layer small@v1: not gzip")
  })
})
