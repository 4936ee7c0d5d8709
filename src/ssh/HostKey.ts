// The registry's host key, <dir>/host_key: an OpenSSH-format ed25519 private key generated on first
// start (mode 0600, written atomically) and reused afterwards. Its fingerprint is what clients pin.
// `-hostkey FILE` names another file, which must exist: replicas behind one name all load the same key
// (a replica that generated its own would break every agent's -fp when it answers).
import { Context, Effect, Layer } from "effect"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { writeFileAtomic } from "../fs/Atomic.js"
import { fingerprint } from "./Fingerprint.js"
import { SshError } from "./SshError.js"
import { generateEd25519 } from "./KeyGen.js"

export interface HostKeyInfo {
  /** The private key file's content, as ssh2's Server takes it. */
  readonly privateKey: Buffer
  /** `SHA256:…`, the same as `ssh-keygen -lf <dir>/host_key` prints. */
  readonly fingerprint: string
  /** "ssh-ed25519 AAAA…", for known_hosts lines. */
  readonly publicLine: string
  /** True when this start generated the key. */
  readonly created: boolean
}

export class HostKey extends Context.Tag("ssh/HostKey")<HostKey, HostKeyInfo>() {}

const keyError = (message: string, cause?: unknown) => new SshError({ reason: "Key", message, cause })

const describe = (file: string, privateKey: Buffer, created: boolean): Effect.Effect<HostKeyInfo, SshError> => {
  const parsed = ssh2.utils.parseKey(privateKey)
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  if (key === undefined || key instanceof Error || !key.isPrivateKey()) {
    return Effect.fail(keyError(`cannot use host key ${file}: ${key instanceof Error ? key.message : "not a private key"}`))
  }
  const blob = key.getPublicSSH()
  return Effect.succeed({
    privateKey,
    fingerprint: fingerprint(blob),
    publicLine: `${key.type} ${blob.toString("base64")}`,
    created
  })
}

/** Loads `<dir>/host_key`, generating it first if it does not exist. `dir` must exist. */
export const loadOrCreate = (dir: string): Effect.Effect<HostKeyInfo, SshError> => {
  const file = path.join(dir, "host_key")
  const read = Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: (cause) => cause as NodeJS.ErrnoException
  })
  return read.pipe(
    Effect.flatMap((content) => describe(file, content, false)),
    Effect.catchIf(
      (e): e is NodeJS.ErrnoException => !(e instanceof SshError) && e.code === "ENOENT",
      () =>
        Effect.tryPromise({
          try: async () => {
            const pair = generateEd25519("deploy-registry host key")
            // An existing file wins (another start won the race): its key is used.
            const created = await writeFileAtomic(file, pair.private, { mode: 0o600, keepExisting: true })
            return { content: await fs.readFile(file), created }
          },
          catch: (cause) => keyError(`cannot create host key ${file}: ${(cause as Error).message}`, cause)
        }).pipe(Effect.flatMap(({ content, created }) => describe(file, content, created)))
    ),
    Effect.mapError((e) => (e instanceof SshError ? e : keyError(`cannot read host key ${file}: ${(e as Error).message}`, e)))
  )
}

/** Loads `-hostkey FILE`; never generates it (a missing file is an error naming what to do). */
export const loadFile = (file: string): Effect.Effect<HostKeyInfo, SshError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: (cause) =>
      keyError(
        (cause as NodeJS.ErrnoException).code === "ENOENT"
          ? `host key ${file} (-hostkey) does not exist: copy the key of the first replica there (or create one: ssh-keygen -t ed25519 -N '' -f ${file})`
          : `cannot read host key ${file}: ${(cause as Error).message}`,
        cause
      )
  }).pipe(Effect.flatMap((content) => describe(file, content, false)))

/** `-hostkey FILE` when given, else `<dir>/host_key` (generated on first start). */
export const HostKeyLive = (dir: string, file?: string): Layer.Layer<HostKey, SshError> =>
  Layer.effect(HostKey, file === undefined ? loadOrCreate(dir) : loadFile(file))
