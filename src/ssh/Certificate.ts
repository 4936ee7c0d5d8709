// OpenSSH certificates (PROTOCOL.certkeys): parsing the blob a client offers with a `*-cert-v01@openssh.com`
// algorithm. ssh2 passes such a blob through untouched; checking it (CA, validity, principals, options)
// is Auth's job, and this module only reads it and checks the CA's signature over it.
import { fingerprint } from "./Fingerprint.js"
import { parsePublicKeyBlob, readKeyFields, verifySignature, type WirePublicKey } from "./SshSignature.js"
import { stringList, WireReader } from "./WireReader.js"

const SUFFIX = "-cert-v01@openssh.com"

/** The key type a certificate algorithm certifies (`rsa-sha2-512-cert-v01@openssh.com` → `ssh-rsa`). */
export const certifiedKeyType = (algorithm: string): string | undefined => {
  if (!algorithm.endsWith(SUFFIX)) return undefined
  const base = algorithm.slice(0, -SUFFIX.length)
  return base === "rsa-sha2-256" || base === "rsa-sha2-512" || base === "ssh-rsa" ? "ssh-rsa" : base
}

/** The signature algorithm a certificate algorithm signs with (`rsa-sha2-512-cert-v01…` → `rsa-sha2-512`). */
export const certSignatureAlgorithm = (algorithm: string): string | undefined =>
  algorithm.endsWith(SUFFIX) ? algorithm.slice(0, -SUFFIX.length) : undefined

export interface Certificate {
  readonly type: string
  /** The certified key, which must sign the login. */
  readonly publicKey: WirePublicKey
  /** The certified key as a plain key blob's fingerprint (`SHA256:…`, as ssh-keygen -l prints it). */
  readonly keyFingerprint: string
  readonly serial: bigint
  /** 1 user, 2 host. */
  readonly certType: number
  readonly keyId: string
  readonly principals: ReadonlyArray<string>
  /** Seconds since the epoch: valid from `validAfter` (inclusive) to `validBefore` (exclusive). */
  readonly validAfter: bigint
  readonly validBefore: bigint
  readonly criticalOptions: ReadonlyMap<string, string>
  readonly extensions: ReadonlySet<string>
  /** The CA's public key blob. */
  readonly signatureKey: Buffer
  /** True when the CA's signature over the certificate verifies (never with SHA-1). */
  readonly signedByCa: boolean
}

const texts = (buf: Buffer | undefined) => (buf === undefined ? undefined : stringList(buf)?.map((b) => b.toString("utf8")))

/** Parses a certificate blob; undefined when it is not one or is malformed. */
export const parseCertificate = (blob: Buffer): Certificate | undefined => {
  const r = new WireReader(blob)
  const type = r.text()
  if (type === undefined || !type.endsWith(SUFFIX)) return undefined
  const keyType = certifiedKeyType(type)
  if (keyType === undefined || r.string() === undefined /* nonce */) return undefined
  const keyStart = r.offset
  const key = readKeyFields(keyType, r)
  if (key === undefined) return undefined
  const keyFields = blob.subarray(keyStart, r.offset)
  const serial = r.uint64()
  const certType = r.uint32()
  const keyId = r.text()
  const principals = texts(r.string())
  const validAfter = r.uint64()
  const validBefore = r.uint64()
  const critical = r.string()
  const extensions = r.string()
  const reserved = r.string()
  const signatureKey = r.string()
  const signedLength = r.offset // the CA signs everything before its signature, its own key included
  const signature = r.string()
  if (
    serial === undefined || certType === undefined || keyId === undefined || principals === undefined ||
    validAfter === undefined || validBefore === undefined || critical === undefined || extensions === undefined ||
    reserved === undefined || signatureKey === undefined || signature === undefined || !r.done
  ) return undefined
  const optionList = stringList(critical)
  const extList = stringList(extensions)
  if (optionList === undefined || extList === undefined || optionList.length % 2 !== 0 || extList.length % 2 !== 0) return undefined
  const criticalOptions = new Map<string, string>()
  for (let i = 0; i < optionList.length; i += 2) {
    const name = optionList[i]!.toString("utf8")
    // The option's data is itself a string holding the value (empty for flags).
    const data = optionList[i + 1]!
    const value = data.length === 0 ? "" : new WireReader(data).text()
    if (value === undefined || criticalOptions.has(name)) return undefined
    criticalOptions.set(name, value)
  }
  const ca = parsePublicKeyBlob(signatureKey)
  // A certificate used as a CA key is not allowed (OpenSSH: "Certificate signature key is a certificate").
  const signedByCa = ca !== undefined && verifySignature(ca, blob.subarray(0, signedLength), signature)
  const keyType_ = Buffer.from(keyType)
  const plainBlob = Buffer.concat([Buffer.alloc(4), keyType_, keyFields])
  plainBlob.writeUInt32BE(keyType_.length, 0)
  return {
    type,
    publicKey: { type: keyType, key },
    keyFingerprint: fingerprint(plainBlob),
    serial,
    certType,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions: new Set(extList.filter((_, i) => i % 2 === 0).map((b) => b.toString("utf8"))),
    signatureKey,
    signedByCa
  }
}
