// Host and user key fingerprints in OpenSSH's format: `SHA256:` + unpadded base64 of sha256(key blob).
import { createHash } from "node:crypto"

export const fingerprint = (publicKeyBlob: Uint8Array): string =>
  "SHA256:" + createHash("sha256").update(publicKeyBlob).digest("base64").replace(/=+$/, "")

/** Parses a user-given fingerprint; `sha256:` is accepted as well as `SHA256:` (fault 10). */
export const normalizeFingerprint = (input: string): string | undefined => {
  const m = /^sha256:([A-Za-z0-9+/]{43})=?$/i.exec(input.trim())
  return m ? `SHA256:${m[1]}` : undefined
}
