// How a client proves who it is, as ssh chooses: the key named by the flag (`-key`), else by the
// environment (`DEPLOYCTL_KEY` for deployctl), else the ssh-agent at $SSH_AUTH_SOCK, else the first of
// ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exists. A certificate is used with its key: the one named by
// `-cert`, else `<key>-cert.pub` beside the key, as ssh loads it. Checked up front so the user gets one
// clear line (unreadable file, passphrase-protected key, no agent) instead of ssh2's "All configured
// authentication methods failed", and described (`describe`) for -v and for a refused login.
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import ssh2 from "ssh2"
import type { ParsedKey } from "ssh2"
import { certifiedKeyType } from "./Certificate.js"
import { fingerprint } from "./Fingerprint.js"
import { SshError } from "./SshError.js"
import { WireReader } from "./WireReader.js"

export interface ClientCertificate {
  readonly path: string
  /** The key object ssh2 signs with: the private key, presented as the certificate. */
  readonly key: ParsedKey
}

export type ClientAuth =
  | {
      readonly _tag: "Key"
      readonly path: string
      readonly privateKey: Buffer
      /** Where the key came from: `-key`, `DEPLOYCTL_KEY`, `default` (~/.ssh), or a caller's word. */
      readonly source: string
      /** `SHA256:…` of the public key. */
      readonly fingerprint: string
      readonly certificate?: ClientCertificate
    }
  | { readonly _tag: "Agent"; readonly socket: string }

/** The key files ssh tries when none is named, in its order. */
export const DEFAULT_KEY_NAMES = ["id_ed25519", "id_ecdsa", "id_rsa"] as const

const keyError = (message: string, cause?: unknown) => new SshError({ reason: "Key", message, cause })

const homeDir = (home?: string) => home ?? (process.env.HOME || os.homedir())
const expandHome = (p: string, home?: string) => (p === "~" || p.startsWith("~/") ? path.join(homeDir(home), p.slice(1)) : p)

const exists = (p: string) => fs.stat(p).then((s) => s.isFile(), () => false)

/** `mpint r, mpint s` (SSH's ECDSA signature) from node's fixed-width r || s. */
export const sshEcdsaSignature = (p1363: Buffer): Buffer => {
  const half = p1363.length / 2
  const mpint = (b: Buffer) => {
    let i = 0
    while (i < b.length - 1 && b[i] === 0) i++
    const v = b[i]! & 0x80 ? Buffer.concat([Buffer.alloc(1), b.subarray(i)]) : b.subarray(i)
    const len = Buffer.alloc(4)
    len.writeUInt32BE(v.length)
    return Buffer.concat([len, v])
  }
  return Buffer.concat([mpint(p1363.subarray(0, half)), mpint(p1363.subarray(half))])
}

/**
 * The private key presented as its certificate: ssh2 sends `type` as the algorithm and getPublicSSH()
 * as the key blob, and puts sign()'s bytes in the signature as they are (scripts/patch-deps.mjs makes it
 * name the plain algorithm there). RSA certificates sign with rsa-sha2-512, never SHA-1.
 */
const presentAsCertificate = (key: ParsedKey, blob: Buffer, blobType: string): ParsedKey => {
  const algorithm = blobType === "ssh-rsa-cert-v01@openssh.com" ? "rsa-sha2-512-cert-v01@openssh.com" : blobType
  const pem = crypto.createPrivateKey(key.getPrivatePEM())
  const hash = key.type === "ssh-rsa" ? "sha512" : key.type === "ecdsa-sha2-nistp384" ? "sha384" : key.type === "ecdsa-sha2-nistp521" ? "sha512" : key.type === "ecdsa-sha2-nistp256" ? "sha256" : null
  const wrapper = Object.create(key) as ParsedKey
  Object.defineProperty(wrapper, "type", { value: algorithm })
  Object.defineProperty(wrapper, "getPublicSSH", { value: () => blob })
  Object.defineProperty(wrapper, "sign", {
    value: (data: Buffer) =>
      key.type.startsWith("ecdsa-") ? sshEcdsaSignature(crypto.sign(hash, data, { key: pem, dsaEncoding: "ieee-p1363" })) : crypto.sign(hash, data, pem)
  })
  return wrapper
}

/** `text` (an OpenSSH `*-cert.pub` read from `file`) as the certificate of `key`, or why it is not. */
export const certificateFor = (text: string, file: string, key: ParsedKey): ClientCertificate | string => {
  const [type, b64] = text.trim().split(/\s+/)
  const blob = Buffer.from(b64 ?? "", "base64")
  const inner = new WireReader(blob).text()
  if (type === undefined || inner !== type || certifiedKeyType(type) === undefined) return `${file} is not an OpenSSH certificate`
  if (certifiedKeyType(type) !== key.type) return `certificate ${file} is for a ${certifiedKeyType(type)} key, not this ${key.type} key`
  // The certificate must certify this very key (its key fields follow the type and the nonce).
  const r = new WireReader(blob)
  r.string()
  r.string()
  const fields = key.getPublicSSH().subarray(4 + key.type.length)
  if (!blob.subarray(r.offset, r.offset + fields.length).equals(fields)) return `certificate ${file} does not certify this key`
  return { path: file, key: presentAsCertificate(key, blob, type) }
}

const loadCertificate = (file: string, key: ParsedKey): Effect.Effect<ClientCertificate, SshError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (cause) => keyError(`cannot read certificate ${file}: ${(cause as Error).message}`, cause)
  }).pipe(Effect.flatMap((text) => {
    const c = certificateFor(text, file, key)
    return typeof c === "string" ? Effect.fail(keyError(c)) : Effect.succeed(c)
  }))

/**
 * Reads and parses a private key file; passphrase-protected keys are refused with advice. The
 * certificate is `certFile` when given, else `<file>-cert.pub` when that exists.
 */
export const loadKey = (file: string, opts: { readonly source?: string; readonly certFile?: string | undefined; readonly home?: string } = {}): Effect.Effect<ClientAuth, SshError> =>
  Effect.gen(function* () {
    const p = expandHome(file, opts.home)
    const data = yield* Effect.tryPromise({
      try: () => fs.readFile(p),
      catch: (cause) => keyError(`cannot read private key ${file}: ${(cause as Error).message}`, cause)
    })
    const parsed = ssh2.utils.parseKey(data)
    if (parsed instanceof Error) {
      if (/encrypted|passphrase/i.test(parsed.message)) {
        return yield* keyError(
          `private key ${file} is protected by a passphrase, which deployctl cannot ask for: add it to ssh-agent (ssh-add ${file}) and leave out -key`
        )
      }
      return yield* keyError(`${file} is not a usable private key: ${parsed.message}`, parsed)
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed
    if (key === undefined || !key.isPrivateKey()) return yield* keyError(`${file} is not a private key`)
    const beside = `${p}-cert.pub`
    const certFile = opts.certFile !== undefined && opts.certFile !== "" ? expandHome(opts.certFile, opts.home) : (yield* Effect.promise(() => exists(beside))) ? beside : undefined
    const certificate = certFile === undefined ? undefined : yield* loadCertificate(certFile, key)
    return {
      _tag: "Key",
      path: p,
      privateKey: data,
      source: opts.source ?? "-key",
      fingerprint: fingerprint(key.getPublicSSH()),
      ...(certificate !== undefined ? { certificate } : {})
    } as const
  })

/** The agent at `socket` (normally $SSH_AUTH_SOCK), if that is a socket. */
export const agentAt = (socket: string | undefined): Effect.Effect<ClientAuth, SshError> =>
  Effect.gen(function* () {
    if (socket === undefined || socket === "") {
      return yield* keyError("no -key given and SSH_AUTH_SOCK is not set: pass -key FILE or start ssh-agent and ssh-add a key")
    }
    const st = yield* Effect.tryPromise({
      try: () => fs.stat(socket),
      catch: (cause) => keyError(`SSH_AUTH_SOCK=${socket} is not usable (${(cause as Error).message}); is ssh-agent running?`, cause)
    })
    if (!st.isSocket()) return yield* keyError(`SSH_AUTH_SOCK=${socket} is not a socket; is ssh-agent running?`)
    return { _tag: "Agent", socket } as const
  })

/** The first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exists, or undefined. */
export const findDefaultKey = (home?: string): Effect.Effect<string | undefined> =>
  Effect.promise(async () => {
    for (const name of DEFAULT_KEY_NAMES) {
      const p = path.join(homeDir(home), ".ssh", name)
      if (await exists(p)) return p
    }
    return undefined
  })

export interface KeyChoice {
  /** `-key FILE` */
  readonly keyFile?: string | undefined
  /** `-cert FILE` */
  readonly certFile?: string | undefined
  /** The environment's key (DEPLOYCTL_KEY), used when there is no flag. */
  readonly envKey?: string | undefined
  readonly envName?: string
  readonly agentSocket?: string | undefined
  /** Where ~/.ssh is; default $HOME. */
  readonly home?: string | undefined
  /** Try ~/.ssh/id_* after the agent (deployctl); without it, no agent is an error as before. */
  readonly defaultKeys?: boolean
}

/** Flag > environment > ssh-agent > ~/.ssh/id_ed25519, id_ecdsa, id_rsa. */
export const resolve = (o: KeyChoice): Effect.Effect<ClientAuth, SshError> =>
  Effect.gen(function* () {
    const home = o.home !== undefined ? { home: o.home } : {}
    if (o.keyFile !== undefined && o.keyFile !== "") return yield* loadKey(o.keyFile, { source: "-key", certFile: o.certFile, ...home })
    if (o.envKey !== undefined && o.envKey !== "") return yield* loadKey(o.envKey, { source: o.envName ?? "DEPLOYCTL_KEY", certFile: o.certFile, ...home })
    const agent = yield* Effect.either(agentAt(o.agentSocket))
    if (agent._tag === "Right" || !o.defaultKeys) return yield* agent
    const found = yield* findDefaultKey(o.home)
    if (found !== undefined) return yield* loadKey(found, { source: "default", certFile: o.certFile, ...home })
    // A set but broken SSH_AUTH_SOCK says so; otherwise every way to give a key.
    if (o.agentSocket !== undefined && o.agentSocket !== "") return yield* agent
    return yield* keyError(
      `no key to log in with: pass -key FILE, set ${o.envName ?? "DEPLOYCTL_KEY"}, start ssh-agent and ssh-add a key (SSH_AUTH_SOCK is not set), ` +
        `or create ~/.ssh/id_ed25519 (ssh-keygen -t ed25519)`
    )
  })

/** One phrase for -v and error messages: which key (or agent) is used, and from where. */
export const describe = (auth: ClientAuth): string =>
  auth._tag === "Agent"
    ? `the keys of ssh-agent (SSH_AUTH_SOCK=${auth.socket})`
    : `key ${auth.path} (${auth.fingerprint}${auth.source === "default" ? ", the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa" : ""})` +
      (auth.certificate !== undefined ? ` with certificate ${auth.certificate.path}` : "")

/** What a refused login says after "authentication to … as … failed: ": what was offered, and the next step. */
export const refusedAdvice = (auth: ClientAuth): string =>
  auth._tag === "Agent"
    ? `the registry refused every key of ssh-agent (SSH_AUTH_SOCK=${auth.socket}; ssh-add -l lists them): ` +
      `add the public key of one of them to the registry's operator keys file (-opauth), or pass -key FILE`
    : `the registry refused ${describe(auth)}: add its public key (${auth.path}.pub, or ssh-keygen -y -f ${auth.path}) ` +
      `to the registry's operator keys file (-opauth); a key from the agent keys file (-srvauth) logs in only as deploy-agent`

/** The part of ssh2's ConnectConfig (and our Connection options) that carries the credentials. */
export const connectFields = (auth: ClientAuth): { privateKey: Buffer; certificate?: ParsedKey } | { agent: string } =>
  auth._tag === "Key"
    ? { privateKey: auth.privateKey, ...(auth.certificate !== undefined ? { certificate: auth.certificate.key } : {}) }
    : { agent: auth.socket }

export interface AgentKey {
  readonly path: string
  readonly privateKey: Buffer
  readonly fingerprint: string
  readonly certificate?: ClientCertificate
  /** For the start-up log line: the key, where it came from, the certificate. */
  readonly description: string
}

/**
 * deploy-agent's key, synchronously at start-up: `-key` as given (relative to `cwd`), else the first of
 * ~/.ssh/id_ed25519, id_ecdsa, id_rsa, else `./id_ecdsa` (the original's default). The certificate is
 * `-cert`, else `<key>-cert.pub` when it exists. Errors are one line naming the flag.
 */
export const agentKey = (o: { readonly keyFlag?: string | undefined; readonly certFlag?: string | undefined; readonly cwd: string; readonly home?: string }): { readonly error: string } | AgentKey => {
  const isFile = (p: string) => {
    try {
      return fsSync.statSync(p).isFile()
    } catch {
      return false
    }
  }
  const explicit = o.keyFlag !== undefined && o.keyFlag !== ""
  const candidates = [...DEFAULT_KEY_NAMES.map((n) => path.join(homeDir(o.home), ".ssh", n)), path.resolve(o.cwd, "id_ecdsa")]
  const keyPath = explicit ? path.resolve(o.cwd, expandHome(o.keyFlag!, o.home)) : candidates.find(isFile)
  if (keyPath === undefined) return { error: `-key: no key given and none of ${candidates.join(", ")} exists` }
  let privateKey: Buffer
  try {
    privateKey = fsSync.readFileSync(keyPath)
  } catch (e) {
    return { error: `-key: cannot read ${keyPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }
  }
  const parsed = ssh2.utils.parseKey(privateKey)
  if (parsed instanceof Error) return { error: `-key: cannot use ${keyPath}: ${parsed.message}` }
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  if (!key?.isPrivateKey()) return { error: `-key: cannot use ${keyPath}: not a private key` }
  const certPath = o.certFlag !== undefined && o.certFlag !== "" ? path.resolve(o.cwd, expandHome(o.certFlag, o.home)) : isFile(`${keyPath}-cert.pub`) ? `${keyPath}-cert.pub` : undefined
  let certificate: ClientCertificate | undefined
  if (certPath !== undefined) {
    let text: string
    try {
      text = fsSync.readFileSync(certPath, "utf8")
    } catch (e) {
      return { error: `-cert: cannot read ${certPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }
    }
    const c = certificateFor(text, certPath, key)
    if (typeof c === "string") return { error: `-cert: ${c}` }
    certificate = c
  }
  const fp = fingerprint(key.getPublicSSH())
  const source = explicit ? "-key" : keyPath === candidates.at(-1) ? "the original's default ./id_ecdsa" : "the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa"
  return {
    path: keyPath,
    privateKey,
    fingerprint: fp,
    ...(certificate !== undefined ? { certificate } : {}),
    description: `key ${keyPath} (${fp}, ${source})${certificate !== undefined ? ` with certificate ${certificate.path}` : ""}`
  }
}
