// SSHSIG, the signature format of `ssh-keygen -Y sign` (OpenSSH PROTOCOL.sshsig): an armored blob
//   "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved) string(hash algorithm)
//   string(signature)
// where the signature is an ordinary SSH signature over
//   "SSHSIG" string(namespace) string(reserved) string(hash algorithm) string(H(message)).
// Keys: ed25519, ecdsa-sha2-nistp256/384/521 and RSA signing with rsa-sha2-512 (rsa-sha2-256 verifies
// too, as in OpenSSH; SHA-1 `ssh-rsa` never). A verification always checks the namespace, the hash
// algorithm (sha256/sha512 only) and the signature itself; the caller decides whether the key is trusted.
import * as crypto from "node:crypto"
import { sshEcdsaSignature } from "./ClientAuth.js"
import { parsePublicKeyBlob, verifySignature, type WirePublicKey } from "./SshSignature.js"
import { WireReader } from "./WireReader.js"

/** The namespace deploy-tools signs in (`ssh-keygen -Y sign -n deploy-tools`). */
export const NAMESPACE = "deploy-tools"
const MAGIC = Buffer.from("SSHSIG")
const BEGIN = "-----BEGIN SSH SIGNATURE-----"
const END = "-----END SSH SIGNATURE-----"
/** An armored signature is a few KiB at most (RSA 16384 bits); anything bigger is not one. */
export const MAX_SIGNATURE_TEXT = 16 * 1024

export type HashAlgorithm = "sha256" | "sha512"

export interface SshSig {
  /** The signer's public key blob (SSH wire form). */
  readonly publicKey: Buffer
  readonly namespace: string
  readonly hashAlgorithm: string
  /** `string algorithm, string signature`, as in SSH. */
  readonly signature: Buffer
}

export const str = (b: Buffer | string): Buffer => {
  const data = typeof b === "string" ? Buffer.from(b, "utf8") : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  return Buffer.concat([len, data])
}

/** What the key signs for `message` (PROTOCOL.sshsig §3). */
export const signedData = (namespace: string, hashAlgorithm: HashAlgorithm, message: Buffer): Buffer =>
  Buffer.concat([MAGIC, str(namespace), str(""), str(hashAlgorithm), str(crypto.createHash(hashAlgorithm).update(message).digest())])

/** The armored text, wrapped at 70 columns as ssh-keygen writes it. */
export const armor = (sig: SshSig): string => {
  const version = Buffer.alloc(4)
  version.writeUInt32BE(1)
  const blob = Buffer.concat([MAGIC, version, str(sig.publicKey), str(sig.namespace), str(""), str(sig.hashAlgorithm), str(sig.signature)])
  const b64 = blob.toString("base64")
  const lines: Array<string> = []
  for (let i = 0; i < b64.length; i += 70) lines.push(b64.slice(i, i + 70))
  return `${BEGIN}\n${lines.join("\n")}\n${END}\n`
}

/** The parts of an armored signature, or why it is not one. */
export const parseArmored = (text: string): SshSig | string => {
  if (text.length > MAX_SIGNATURE_TEXT) return "signature is too large"
  const start = text.indexOf(BEGIN)
  const end = text.indexOf(END)
  if (start < 0 || end < start) return "not an SSH signature (no BEGIN/END SSH SIGNATURE lines)"
  const b64 = text.slice(start + BEGIN.length, end).replace(/\s+/g, "")
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return "SSH signature is not base64"
  const blob = Buffer.from(b64, "base64")
  if (!blob.subarray(0, 6).equals(MAGIC)) return "SSH signature has no SSHSIG preamble"
  const rr = new WireReader(blob.subarray(6))
  const version = rr.uint32()
  const publicKey = rr.string()
  const namespace = rr.text()
  const reserved = rr.string()
  const hashAlgorithm = rr.text()
  const signature = rr.string()
  if (version !== 1) return `unsupported SSH signature version ${version ?? "(none)"}`
  if (publicKey === undefined || namespace === undefined || reserved === undefined || hashAlgorithm === undefined || signature === undefined || !rr.done) {
    return "SSH signature is truncated or has trailing data"
  }
  return { publicKey, namespace, hashAlgorithm, signature }
}

export type Verified =
  | { readonly _tag: "Valid"; readonly key: WirePublicKey; readonly publicKey: Buffer }
  | { readonly _tag: "Invalid"; readonly reason: string }

const invalid = (reason: string): Verified => ({ _tag: "Invalid", reason })

/** Checks an armored signature over `message` in `namespace`: format, namespace, hash, signature. */
export const verify = (text: string, message: Buffer, namespace: string = NAMESPACE): Verified => {
  const sig = parseArmored(text)
  if (typeof sig === "string") return invalid(sig)
  if (sig.namespace !== namespace) return invalid(`signature is for namespace ${JSON.stringify(sig.namespace)}, not ${JSON.stringify(namespace)}`)
  if (sig.hashAlgorithm !== "sha256" && sig.hashAlgorithm !== "sha512") return invalid(`unsupported hash algorithm ${JSON.stringify(sig.hashAlgorithm)}`)
  const key = parsePublicKeyBlob(sig.publicKey)
  if (key === undefined) return invalid("signature names an unsupported or malformed public key")
  // SSHSIG pins RSA to SHA-2 (verifySignature refuses SHA-1 `ssh-rsa` for every key anyway).
  const algo = new WireReader(sig.signature).text()
  if (key.type === "ssh-rsa" && algo !== "rsa-sha2-512" && algo !== "rsa-sha2-256") return invalid(`RSA signature made with ${algo ?? "?"}`)
  if (!verifySignature(key, signedData(namespace, sig.hashAlgorithm, message), sig.signature)) return invalid("bad signature")
  return { _tag: "Valid", key, publicKey: sig.publicKey }
}

/** The SSH signature blob of `data` by a private key (node:crypto), with ssh-keygen's algorithm choice. */
export const signWithPrivateKey = (key: crypto.KeyObject, keyType: string, data: Buffer): Buffer => {
  if (keyType === "ssh-ed25519") return Buffer.concat([str(keyType), str(crypto.sign(null, data, key))])
  if (keyType === "ssh-rsa") return Buffer.concat([str("rsa-sha2-512"), str(crypto.sign("sha512", data, key))])
  const hash = { "ecdsa-sha2-nistp256": "sha256", "ecdsa-sha2-nistp384": "sha384", "ecdsa-sha2-nistp521": "sha512" }[keyType]
  if (hash === undefined) throw new Error(`cannot sign with a ${keyType} key`)
  return Buffer.concat([str(keyType), str(sshEcdsaSignature(crypto.sign(hash, data, { key, dsaEncoding: "ieee-p1363" })))])
}

/** The algorithm name a signature blob declares. */
export const signatureAlgorithm = (sigBlob: Buffer): string | undefined => new WireReader(sigBlob).text()
