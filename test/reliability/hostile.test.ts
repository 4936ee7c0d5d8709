// Hostile clients against the built registry: SFTP channels fed garbage and absurd lengths, path tricks in
// the agent's read-only view, random exec payloads. (Sockets that never finish the handshake wait out the
// 20 s limit: stalled-handshakes.test.ts, in the reliability tier.)
import { randomBytes } from "node:crypto"
import { existsSync, readFileSync, rmSync } from "node:fs"
import * as path from "node:path"
import type { ClientChannel, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startRegistry, type TestRegistry } from "../support/registry.js"
import { helpWorks, openSession, type Session, sha256 } from "./lib/client.js"
import { makeRng } from "./lib/random.js"
import { layerOf } from "../support/tar.js"
import { waitFor } from "./lib/proc.js"

let reg: TestRegistry
let blob: Buffer
let blobHash: string
let doc: Buffer

beforeAll(async () => {
  reg = await startRegistry()
  const s = await openSession(reg, reg.operator.privatePath)
  try {
    blob = layerOf(randomBytes(70_000))
    blobHash = await s.upload(blob)
    expect((await s.exec(`addver -name code -version v1 -hash ${blobHash}`)).code).toBe(0)
    expect((await s.exec("addconf -name x -layer code:v1")).code).toBe(0)
  } finally {
    await s.close()
  }
  const agent = await openSession(reg, reg.agent.privatePath, "deploy-agent")
  doc = await agent.readFile("/configs/x.json")
  await agent.close()
  expect(JSON.parse(doc.toString()).Name).toBe("x")
})

afterAll(async () => {
  await reg?.stop("SIGKILL")
  if (reg) rmSync(reg.dir, { recursive: true, force: true })
})

/** Opens the sftp subsystem as a raw channel: we write the SFTP bytes ourselves. */
const rawSftp = (s: Session) =>
  new Promise<ClientChannel>((resolve, reject) => s.client.subsys("sftp", (err, ch) => (err ? reject(err) : resolve(ch))))

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
const packet = (type: number, body: Buffer) => Buffer.concat([u32(body.length + 1), Buffer.from([type]), body])
const INIT = packet(1, u32(3))

const garbage: ReadonlyArray<[string, Buffer]> = [
  ["an absurd length", Buffer.concat([INIT, u32(0xfffffff0), Buffer.from([3]), randomBytes(64)])],
  ["a zero length", Buffer.concat([INIT, u32(0), u32(0), u32(0)])],
  ["a string length past the packet", Buffer.concat([INIT, packet(3, Buffer.concat([u32(7), u32(0xffffff00), Buffer.from("abc")]))])],
  ["random bytes before INIT", randomBytes(70_000)],
  ["random packets after INIT", Buffer.concat([INIT, ...Array.from({ length: 50 }, () => packet(randomBytes(1)[0]!, randomBytes(40)))])]
]

describe("SFTP channels fed garbage", () => {
  for (const user of ["operator", "deploy-agent"] as const) {
    for (const [what, bytes] of garbage) {
      it(`${user}: ${what} ends that channel or is refused, harming no other session`, async () => {
        const key = user === "operator" ? reg.operator.privatePath : reg.agent.privatePath
        const [victim, bystander] = await Promise.all([openSession(reg, key, user), openSession(reg, reg.agent.privatePath, "deploy-agent")])
        try {
          // The bystander has a download in progress on another connection.
          const bystanderRead = bystander.readFile(`/files/${blobHash}`)
          bystanderRead.catch(() => undefined)
          const ch = await rawSftp(victim)
          let ended = false
          const replies: Array<Buffer> = []
          ch.on("data", (d: Buffer) => replies.push(d))
          ch.on("close", () => (ended = true))
          ch.on("error", () => undefined)
          ch.write(bytes)
          // Either the server closes the channel, or it answers only with protocol replies and stays sane.
          await waitFor(() => ended, 5_000, 50)
          if (!ended) {
            // Still open: it must not be waiting on a 4 GiB packet with the door open; close from our side.
            ch.close()
          }
          expect(sha256(await bystanderRead)).toBe(blobHash)
          // Same connection, new channel: still fine when the connection survived; a new connection always.
          expect(await helpWorks(reg)).toBe(true)
          const again = await openSession(reg, reg.agent.privatePath, "deploy-agent")
          expect((await again.readFile("/configs/x.json")).equals(doc)).toBe(true)
          await again.close()
          expect(reg.log()).not.toMatch(/internal error|TypeError|RangeError|Maximum call stack/)
          if (what === "an absurd length") expect(ended).toBe(true)
        } finally {
          await Promise.all([victim.close().catch(() => undefined), bystander.close().catch(() => undefined)])
        }
      })
    }
  }
})

const attempt = <A>(f: (cb: (err: Error | null | undefined, a: A) => void) => void) =>
  new Promise<{ ok: true; value: A } | { ok: false; error: string }>((resolve) =>
    f((err, a) => resolve(err ? { ok: false, error: err.message } : { ok: true, value: a }))
  )

const readAll = (sftp: SFTPWrapper, p: string) => attempt<Buffer>((cb) => sftp.readFile(p, cb))

describe("path tricks in the agent's read-only view", () => {
  it("never reads outside the view", async () => {
    const agent = await openSession(reg, reg.agent.privatePath, "deploy-agent")
    const sftp = await agent.sftp()
    const secrets = [readFileSync(path.join(reg.dir, "state.db")), readFileSync(path.join(reg.dir, "host_key")), readFileSync("/etc/passwd")]
    const isSecret = (b: Buffer) => secrets.some((s) => s.equals(b)) || b.includes(Buffer.from("PRIVATE KEY")) || b.includes(Buffer.from("SQLite format"))
    try {
      // path → what may be read there (undefined: nothing)
      const cases: Array<[string, Buffer | undefined]> = [
        ["/files/../state.db", undefined],
        ["/configs/../../etc/passwd", undefined],
        ["/configs/%2e%2e/x", undefined],
        ["/configs/%2e%2e/state.db", undefined],
        ["//configs//x.json", doc],
        ["/configs/./x.json", doc],
        [`/files/./${blobHash}`, blob],
        [`/files//${blobHash}`, blob],
        ["configs/../../x", undefined],
        ["configs/../../state.db", undefined],
        ["../../../../etc/passwd", undefined],
        ["/../host_key", undefined],
        ["/host_key", undefined],
        ["/state.db", undefined],
        ["/uploads", undefined],
        [`/files/${blobHash}/../../state.db`, undefined],
        ["/configs/x.json/../../state.db", undefined],
        ["/configs/../files/../../../etc/passwd", undefined],
        ["/files/..%2fstate.db", undefined],
        ["/files/\\..\\state.db", undefined],
        ["/configs/x.json\u0000.png", undefined],
        [`/files/${blobHash.toUpperCase()}`, undefined]
      ]
      for (const [p, allowed] of cases) {
        const r = await readAll(sftp, p)
        if (r.ok) {
          expect(isSecret(r.value), p).toBe(false)
          expect(allowed === undefined ? `read ${r.value.length} bytes` : r.value.equals(allowed), p).toBe(true)
        }
        const st = await attempt<{ size: number }>((cb) => sftp.stat(p, cb))
        if (st.ok) expect(allowed?.length, `stat ${p}`).toBe(st.value.size)
      }
      // Listings of escaping directories show only the view.
      for (const p of ["/..", "/configs/..", "/files/../..", "..", "/configs/../../../"]) {
        const r = await attempt<Array<{ filename: string }>>((cb) => sftp.readdir(p, cb))
        if (r.ok) expect(r.value.map((e) => e.filename).filter((n) => n !== "." && n !== "..").sort(), p).toEqual(["configs", "files"])
      }
      for (const p of ["/", "/../..", "x/../../.."]) {
        const r = await attempt<string>((cb) => sftp.realpath(p, cb))
        if (r.ok) expect(r.value, p).toBe("/")
      }
      // Nothing can be changed.
      const w = await attempt<Buffer>((cb) => sftp.open("/configs/y.json", "w", cb))
      expect(w.ok).toBe(false)
      const rm = await attempt<void>((cb) => sftp.unlink(`/files/${blobHash}`, (e) => cb(e, undefined)))
      expect(rm.ok).toBe(false)
      expect(existsSync(path.join(reg.dir, "files", blobHash))).toBe(true)
    } finally {
      await agent.close()
    }
  })

  it("an operator's upload path never decides where bytes land", async () => {
    const s = await openSession(reg, reg.operator.privatePath)
    try {
      const bytes = randomBytes(5000)
      for (const name of ["../../escape-a", "/tmp/escape-b", "../state.db", "files/" + sha256(bytes)]) {
        await s.upload(bytes, name)
      }
      expect(existsSync(path.join(reg.dir, "..", "escape-a"))).toBe(false)
      expect(existsSync("/tmp/escape-b")).toBe(false)
      expect(readFileSync(path.join(reg.dir, "state.db")).subarray(0, 15).toString()).toBe("SQLite format 3")
      expect(existsSync(path.join(reg.dir, "uploads", sha256(bytes)))).toBe(true)
      expect(existsSync(path.join(reg.dir, "files", sha256(bytes)))).toBe(false)
    } finally {
      await s.close()
    }
  })
})

describe("random exec payloads", () => {
  it("never crash the registry or leak an internal error", async () => {
    const rng = makeRng()
    const s = await openSession(reg, reg.operator.privatePath)
    const words = ["addver", "addconf", "changeconf", "bumpconf", "replaceconf", "showconf", "showcomp", "delver", "delcomp",
      "delconf", "history", "rollback", "verify", "help", "-name", "--name=", "-layer", "-expect", "-force", "-v", "-json",
      "'", "\"", "\\", "$(id)", "`id`", ";", "|", "&&", "\n", "\t", "\u0000", "é", "💥", ":", "/", "..", "-", "--", "="]
    try {
      for (let i = 0; i < 200; i++) {
        const kind = i % 4
        const payload =
          kind === 0 ? randomBytes(rng.int(0, 300)).toString("latin1")
          : kind === 1 ? randomBytes(rng.int(0, 300)).toString("utf8")
          : kind === 2 ? Array.from({ length: rng.int(0, 12) }, () => rng.pick(words)).join(rng.pick([" ", "", "="]))
          : `${rng.pick(words.slice(0, 14))} ${"-name ".repeat(rng.int(0, 3))}${"x".repeat(rng.int(0, 30_000))}`
        const r = await s.exec(payload)
        expect([0, 1], JSON.stringify(payload.slice(0, 200))).toContain(r.code)
        expect(r.stdout.toString(), JSON.stringify(payload.slice(0, 200))).not.toMatch(/internal error/)
        expect(r.stderr.length).toBe(0)
      }
    } finally {
      await s.close()
    }
    expect(await helpWorks(reg)).toBe(true)
    const v = await openSession(reg, reg.operator.privatePath)
    expect((await v.exec("verify")).code).toBe(0)
    expect((await v.exec("configurations")).stdout.toString()).toBe("x\n")
    await v.close()
  })
})

describe("random bytes typed into the interactive shell", () => {
  for (const pty of [false, true]) {
    it(`never crash the registry (${pty ? "with" : "without"} a terminal)`, async () => {
      const s = await openSession(reg, reg.operator.privatePath)
      try {
        const ch = await new Promise<ClientChannel>((resolve, reject) =>
          pty
            ? s.client.shell({ term: "xterm", cols: 80, rows: 24 }, (err, c) => (err ? reject(err) : resolve(c)))
            : s.client.shell(false, (err, c) => (err ? reject(err) : resolve(c)))
        )
        let out = ""
        ch.on("data", (d: Buffer) => (out += d.toString("latin1")))
        ch.stderr.on("data", () => undefined)
        const closed = new Promise<void>((resolve) => ch.once("close", () => resolve()))
        const rng = makeRng()
        const eol = pty ? "\r" : "\n"
        for (let i = 0; i < 40; i++) {
          // escape sequences, control characters, very long lines, invalid UTF-8
          const junk = rng.chance(0.3) ? Buffer.from(`\x1b[${rng.int(0, 99)}${rng.pick(["A", "B", "C", "D", "H", "F", "~", "3~"])}`) : randomBytes(rng.int(1, 2000))
          // ^D on an empty line ends the session by design: leave it out so the session survives the junk.
          ch.write(Buffer.from(junk.filter((b) => b !== 0x04)))
          if (rng.chance(0.5)) ch.write(eol)
        }
        ch.write(`\x15${eol}help${eol}`) // ^U clears the line, then a real command
        await waitFor(() => out.includes("addver"), 10_000)
        ch.end()
        await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))])
        expect(out).toContain("addver")
      } finally {
        await s.close()
      }
      expect(await helpWorks(reg)).toBe(true)
      expect(reg.log()).not.toMatch(/internal error|TypeError|RangeError/)
    })
  }
})
