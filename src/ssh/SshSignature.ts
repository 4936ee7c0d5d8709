// Public keys and signatures in SSH wire form, checked with node:crypto: the login signature of a
// certificate's key and a CA's signature over a certificate (ssh2 does neither). SHA-1 signatures
// (`ssh-rsa`) are refused as OpenSSH 8.8+ refuses them, and so are DSA keys.
import * as crypto from "node:crypto"
import { WireReader } from "./WireReader.js"

export interface WirePublicKey {
  /** `ssh-ed25519`, `ecdsa-sha2-nistp256`, … `ssh-rsa` */
  readonly type: string
  readonly key: crypto.KeyObject
}

const CURVES: Record<string, { readonly crv: string; readonly size: number; readonly hash: string }> = {
  "ecdsa-sha2-nistp256": { crv: "P-256", size: 32, hash: "sha256" },
  "ecdsa-sha2-nistp384": { crv: "P-384", size: 48, hash: "sha384" },
  "ecdsa-sha2-nistp521": { crv: "P-521", size: 66, hash: "sha512" }
}

const b64u = (b: Buffer) => b.toString("base64url")
/** An mpint without its sign byte. */
const unsigned = (b: Buffer) => (b.length > 1 && b[0] === 0 ? b.subarray(1) : b)

/** Reads the key fields for `type` from `r` (a key blob after its type, or a certificate's key part). */
export const readKeyFields = (type: string, r: WireReader): crypto.KeyObject | undefined => {
  try {
    if (type === "ssh-ed25519") {
      const pk = r.string()
      if (pk === undefined || pk.length !== 32) return undefined
      return crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64u(pk) }, format: "jwk" })
    }
    const curve = CURVES[type]
    if (curve !== undefined) {
      const name = r.text()
      const q = r.string()
      if (q === undefined || name !== type.slice("ecdsa-sha2-".length)) return undefined
      if (q.length !== 1 + 2 * curve.size || q[0] !== 4) return undefined
      const x = q.subarray(1, 1 + curve.size)
      const y = q.subarray(1 + curve.size)
      return crypto.createPublicKey({ key: { kty: "EC", crv: curve.crv, x: b64u(x), y: b64u(y) }, format: "jwk" })
    }
    if (type === "ssh-rsa") {
      const e = r.string()
      const n = r.string()
      if (e === undefined || n === undefined) return undefined
      const key = crypto.createPublicKey({ key: { kty: "RSA", e: b64u(unsigned(e)), n: b64u(unsigned(n)) }, format: "jwk" })
      // OpenSSH refuses RSA keys under 1024 bits (SSH_RSA_MINIMUM_MODULUS_SIZE).
      return (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 1024 ? key : undefined
    }
  } catch {
    return undefined
  }
  return undefined
}

/** A plain public key blob (`string type, key fields`), e.g. a CA key or a certificate's signature key. */
export const parsePublicKeyBlob = (blob: Buffer): WirePublicKey | undefined => {
  const r = new WireReader(blob)
  const type = r.text()
  if (type === undefined) return undefined
  const key = readKeyFields(type, r)
  return key !== undefined && r.done ? { type, key } : undefined
}

/** The signature algorithms each key type may sign with (no `ssh-rsa`: SHA-1). */
export const signatureAlgorithms = (keyType: string): ReadonlyArray<string> =>
  keyType === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256"] : keyType in CURVES || keyType === "ssh-ed25519" ? [keyType] : []

/**
 * Verifies an SSH signature blob (`string algorithm, string signature`) over `data`. `algorithm`, when
 * given, is the one the signature must use (the client named it in its request).
 */
export const verifySignature = (pub: WirePublicKey, data: Buffer, sigBlob: Buffer, algorithm?: string): boolean => {
  const r = new WireReader(sigBlob)
  const algo = r.text()
  const sig = r.string()
  if (algo === undefined || sig === undefined || !r.done) return false
  if (!signatureAlgorithms(pub.type).includes(algo) || (algorithm !== undefined && algo !== algorithm)) return false
  try {
    if (pub.type === "ssh-ed25519") return crypto.verify(null, data, pub.key, sig)
    const curve = CURVES[pub.type]
    if (curve !== undefined) {
      // The signature is `mpint r, mpint s`; node takes them as fixed-width r || s (IEEE P1363).
      const rs = new WireReader(sig)
      const rr = rs.string()
      const ss = rs.string()
      if (rr === undefined || ss === undefined || !rs.done) return false
      const fixed = (v: Buffer) => {
        const u = unsigned(v)
        if (u.length > curve.size) return undefined
        return Buffer.concat([Buffer.alloc(curve.size - u.length), u])
      }
      const fr = fixed(rr)
      const fs = fixed(ss)
      if (fr === undefined || fs === undefined) return false
      return crypto.verify(curve.hash, data, { key: pub.key, dsaEncoding: "ieee-p1363" }, Buffer.concat([fr, fs]))
    }
    if (pub.type === "ssh-rsa") return crypto.verify(algo === "rsa-sha2-512" ? "sha512" : "sha256", data, pub.key, sig)
  } catch {
    return false
  }
  return false
}
