// Puts layers into a real test registry as its operator: SFTP upload, then `addver`/`addconf`/... over exec.
import * as fs from "node:fs"
import { writeFile } from "node:fs/promises"
import * as path from "node:path"
import ssh2 from "ssh2"
import type { Client } from "ssh2"
import { fingerprint } from "../../src/ssh/Fingerprint.js"
import type { TestRegistry } from "../support/registry.js"
import { sha256 } from "./fixtures.js"

const connect = (reg: TestRegistry): Promise<Client> =>
  new Promise((resolve, reject) => {
    const c = new ssh2.Client()
    c.once("ready", () => resolve(c))
      .once("error", reject)
      .connect({
        host: "127.0.0.1",
        port: reg.port,
        username: "operator",
        privateKey: fs.readFileSync(reg.operator.privatePath),
        hostVerifier: (key: Buffer) => fingerprint(key) === reg.fingerprint
      })
  })

export const exec = async (reg: TestRegistry, command: string): Promise<{ code: number; output: string }> => {
  const c = await connect(reg)
  try {
    return await new Promise((resolve, reject) => {
      c.exec(command, (err, ch) => {
        if (err) return reject(err)
        let output = ""
        let code = -1
        ch.on("data", (b: Buffer) => (output += b.toString()))
        ch.stderr.on("data", (b: Buffer) => (output += b.toString()))
        ch.on("exit", (status: number) => (code = status))
        ch.on("close", () => resolve({ code, output }))
      })
    })
  } finally {
    c.end()
  }
}

export const run = async (reg: TestRegistry, command: string): Promise<string> => {
  const r = await exec(reg, command)
  if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.output}`)
  return r.output
}

export const upload = async (reg: TestRegistry, bytes: Buffer): Promise<string> => {
  const c = await connect(reg)
  try {
    await new Promise<void>((resolve, reject) =>
      c.sftp((err, sftp) => {
        if (err) return reject(err)
        sftp.writeFile("/upload.tar.gz", bytes, (e) => {
          sftp.end()
          return e ? reject(e) : resolve()
        })
      })
    )
  } finally {
    c.end()
  }
  return sha256(bytes)
}

/** Uploads `bytes` and records it as component `name` version `version`; returns its hash. */
export const addVersion = async (reg: TestRegistry, name: string, version: string, bytes: Buffer): Promise<string> => {
  const hash = await upload(reg, bytes)
  await run(reg, `addver -name ${name} -version ${version} -hash ${hash}`)
  return hash
}

/**
 * A hostile registry: `bytes` stored as component `name` version `version` behind the registry's
 * back (blob file and metadata row written directly), for layers its addver would refuse.
 */
export const plantVersion = async (reg: TestRegistry, name: string, version: string, bytes: Buffer): Promise<string> => {
  const hash = sha256(bytes)
  await writeFile(path.join(reg.dir, "files", hash), bytes, { mode: 0o644 })
  type Db = { pragma(s: string): unknown; prepare(s: string): { run(...a: Array<unknown>): unknown }; close(): void }
  const sqlite: string = "better-sqlite3" // untyped here (no @types): only these three calls are used
  const { default: Database } = (await import(sqlite)) as { default: new (file: string) => Db }
  const db = new Database(path.join(reg.dir, "state.db"))
  try {
    db.pragma("busy_timeout = 5000")
    db.prepare("INSERT INTO versions (component, version, hash, ctime) VALUES (?, ?, ?, ?)").run(name, version, hash, new Date().toISOString())
  } finally {
    db.close()
  }
  return hash
}
