// OpenSSH allowed_signers files (ssh-keygen(1) ALLOWED SIGNERS): `principals [options] keytype base64
// [comment]` per line, `#` comments and blank lines ignored. Principals are a comma-separated pattern
// list (optionally in double quotes). Options: namespaces="pattern-list", valid-after= and
// valid-before= (YYYYMMDD[HHMM[SS]][Z], as expiry-time=). `cert-authority` lines are not supported and,
// like any other option we do not know, make the line a problem: trusting less than written is safe,
// but the caller reports it so nobody believes a line works that does not.
import { glob } from "./AddressMatch.js"
import { parseOptions, splitOptions } from "./AuthorizedKeys.js"
import { fingerprint } from "./Fingerprint.js"
import { parseExpiryTime } from "./KeyOptions.js"
import { parsePublicKeyBlob } from "./SshSignature.js"

export interface AllowedSigner {
  /** Principal patterns; the first is the name shown for this signer. */
  readonly principals: ReadonlyArray<string>
  readonly publicKey: Buffer
  readonly fingerprint: string
  /** `namespaces="…"`: the pattern list a signature's namespace must match. */
  readonly namespaces?: string
  readonly validAfter?: Date
  readonly validBefore?: Date
  readonly line: number
}

export interface AllowedSignersFile {
  readonly signers: ReadonlyArray<AllowedSigner>
  readonly problems: ReadonlyArray<{ readonly line: number; readonly message: string }>
}

const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521))$/

/** OpenSSH match_pattern_list: a negated match refuses; otherwise any positive match (case-sensitive). */
export const patternListMatches = (list: string, s: string): boolean => {
  let ok = false
  for (const raw of list.split(",")) {
    const negated = raw.startsWith("!")
    if (!glob(negated ? raw.slice(1) : raw, s, "")) continue
    if (negated) return false
    ok = true
  }
  return ok
}

const parseLine = (raw: string, line: number): AllowedSigner | string | undefined => {
  const text = raw.trim()
  if (text === "" || text.startsWith("#")) return undefined
  let principals: string
  let rest: string
  if (text.startsWith('"')) {
    const end = text.indexOf('"', 1)
    if (end < 0) return "unterminated quote in principals"
    principals = text.slice(1, end)
    rest = text.slice(end + 1).trimStart()
  } else {
    const m = /^(\S+)\s+(.*)$/.exec(text)
    if (!m) return "missing key"
    principals = m[1]!
    rest = m[2]!
  }
  if (principals === "" || principals.split(",").some((p) => p === "")) return "empty principal"
  const first = rest.split(/[ \t]/, 1)[0]!
  const found: { namespaces?: string; validAfter?: Date; validBefore?: Date } = {}
  if (!KEY_TYPE.test(first)) {
    const [opts, after] = splitOptions(rest)
    const options = parseOptions(opts)
    if (typeof options === "string") return options
    for (const o of options) {
      const name = o.name.toLowerCase()
      if (name === "namespaces" && o.value !== undefined) found.namespaces = o.value
      else if ((name === "valid-after" || name === "valid-before") && o.value !== undefined) {
        const t = parseExpiryTime(o.value)
        if (t === undefined) return `option ${name}: "${o.value}" is not YYYYMMDD[HHMM[SS]][Z]`
        if (name === "valid-after") found.validAfter = t
        else found.validBefore = t
      } else return `option ${JSON.stringify(o.name)} is not supported${name === "cert-authority" ? " (certificates are not)" : ""}`
    }
    rest = after
  }
  const [type, b64] = rest.split(/[ \t]+/)
  if (type === undefined || !KEY_TYPE.test(type)) return `unsupported key type "${type ?? ""}"`
  if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return "missing or bad base64 key"
  const publicKey = Buffer.from(b64, "base64")
  const key = parsePublicKeyBlob(publicKey)
  if (key === undefined || key.type !== type) return `cannot parse ${type} key`
  return { principals: principals.split(","), publicKey, fingerprint: fingerprint(publicKey), ...found, line }
}

export const parseAllowedSigners = (text: string): AllowedSignersFile => {
  const signers: Array<AllowedSigner> = []
  const problems: Array<{ line: number; message: string }> = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const r = parseLine(raw, i + 1)
    if (typeof r === "string") problems.push({ line: i + 1, message: r })
    else if (r !== undefined) signers.push(r)
  })
  return { signers, problems }
}

/**
 * The line that lets `publicKey` sign in `namespace` at `at` (valid-after ≤ at < valid-before), or why
 * none does: "untrusted" when no line has the key, else the first line's reason.
 */
export const findSigner = (
  signers: ReadonlyArray<AllowedSigner>,
  publicKey: Buffer,
  namespace: string,
  at: Date
): AllowedSigner | { readonly untrusted: true; readonly reason: string } => {
  const lines = signers.filter((s) => s.publicKey.equals(publicKey))
  if (lines.length === 0) return { untrusted: true, reason: `key ${fingerprint(publicKey)} is not in the allowed signers` }
  let reason = ""
  for (const s of lines) {
    if (s.namespaces !== undefined && !patternListMatches(s.namespaces, namespace)) reason ||= `line ${s.line}: namespace ${namespace} not allowed`
    else if (s.validAfter !== undefined && at < s.validAfter) reason ||= `line ${s.line}: key not valid before ${s.validAfter.toISOString()}`
    else if (s.validBefore !== undefined && at >= s.validBefore) reason ||= `line ${s.line}: key expired at ${s.validBefore.toISOString()}`
    else return s
  }
  return { untrusted: true, reason }
}
