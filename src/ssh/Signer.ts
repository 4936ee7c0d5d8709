// Makes SSHSIG signatures (SshSig.ts) with a key file or a key held in ssh-agent, as `ssh-keygen -Y sign
// -f KEY` does (sha512, RSA with rsa-sha2-512). A signature is verified before it is handed out, so an
// agent that signed with another algorithm than asked (ssh2 drops the algorithm it reports) is an error,
// not a signature nobody can check.
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { promises as fs } from "node:fs"
import ssh2 from "ssh2"
import type { ParsedKey } from "ssh2"
import { SshError } from "./SshError.js"
import { armor, NAMESPACE, signedData, signWithPrivateKey, str, verify } from "./SshSig.js"

const keyError = (message: string, cause?: unknown) => new SshError({ reason: "Key", message, cause })

/** Where the signing key is: a private key file, or ssh-agent (optionally the key of a public key file). */
export type SigningKey =
  | { readonly _tag: "File"; readonly path: string }
  | { readonly _tag: "Agent"; readonly socket: string; readonly publicKeyFile?: string }

const parse = (data: Buffer | string, what: string): Effect.Effect<ParsedKey, SshError> => {
  const parsed = ssh2.utils.parseKey(data)
  if (parsed instanceof Error) {
    return Effect.fail(keyError(/encrypted|passphrase/i.test(parsed.message)
      ? `${what} is protected by a passphrase: add it to ssh-agent (ssh-add) and sign through the agent`
      : `${what} is not a usable key: ${parsed.message}`, parsed))
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  return key === undefined ? Effect.fail(keyError(`${what} holds no key`)) : Effect.succeed(key)
}

const readFile = (file: string) =>
  Effect.tryPromise({ try: () => fs.readFile(file), catch: (cause) => keyError(`cannot read ${file}: ${(cause as Error).message}`, cause) })

const agentCall = <A>(f: (cb: (err: Error | undefined | null, a?: A) => void) => void, what: string) =>
  Effect.async<A, SshError>((resume) =>
    f((err, a) => resume(err ? Effect.fail(keyError(`ssh-agent: ${what}: ${err.message}`, err)) : Effect.succeed(a as A))))

/** The SSH signature blob of `data` and the public key blob that made it. */
const rawSign = (key: SigningKey, data: Buffer): Effect.Effect<{ readonly publicKey: Buffer; readonly signature: Buffer }, SshError> =>
  Effect.gen(function* () {
    if (key._tag === "File") {
      const k = yield* parse(yield* readFile(key.path), `private key ${key.path}`)
      if (!k.isPrivateKey()) return yield* keyError(`${key.path} is not a private key`)
      const signature = yield* Effect.try({
        try: () => signWithPrivateKey(crypto.createPrivateKey(k.getPrivatePEM()), k.type, data),
        catch: (cause) => keyError(`cannot sign with ${key.path}: ${(cause as Error).message}`, cause)
      })
      return { publicKey: k.getPublicSSH(), signature }
    }
    const agent = new ssh2.OpenSSHAgent(key.socket)
    const identities = (yield* agentCall<ReadonlyArray<unknown>>((cb) => agent.getIdentities(cb as never), "listing keys")) as ReadonlyArray<ParsedKey>
    let chosen = identities.find((k) => /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521))$/.test(k.type))
    if (key.publicKeyFile !== undefined) {
      const want = (yield* parse(yield* readFile(key.publicKeyFile), `public key ${key.publicKeyFile}`)).getPublicSSH()
      chosen = identities.find((k) => k.getPublicSSH().equals(want))
      if (chosen === undefined) return yield* keyError(`ssh-agent does not hold the key of ${key.publicKeyFile} (ssh-add it)`)
    }
    if (chosen === undefined) return yield* keyError("ssh-agent holds no ed25519, ecdsa or rsa key (ssh-add -l lists them)")
    const k = chosen
    const raw = yield* agentCall<Buffer>((cb) => agent.sign(k, data, { hash: "sha512" }, cb), "signing")
    const algo = k.type === "ssh-rsa" ? "rsa-sha2-512" : k.type
    return { publicKey: k.getPublicSSH(), signature: Buffer.concat([str(algo), str(raw)]) }
  })

/** `ssh-keygen -Y sign -n NAMESPACE` of `message`: the armored signature, checked before it is returned. */
export const sign = (key: SigningKey, message: Buffer, namespace: string = NAMESPACE): Effect.Effect<string, SshError> =>
  Effect.gen(function* () {
    const made = yield* rawSign(key, signedData(namespace, "sha512", message))
    const text = armor({ publicKey: made.publicKey, namespace, hashAlgorithm: "sha512", signature: made.signature })
    const check = verify(text, message, namespace)
    if (check._tag === "Invalid") return yield* keyError(`the signature made does not verify (${check.reason})`)
    return text
  })
