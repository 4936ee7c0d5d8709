// OpenSSH authorized_keys files: `[options] keytype base64 [comment]` per line, `#` comments and blank
// lines ignored. Options (`restrict`, `from="…"`, `command="…"`, `cert-authority`…) are parsed and
// interpreted (KeyOptions.ts); a line that does not parse is reported, not silently trusted, and a line
// whose options we cannot honour is a fatal problem (the registry refuses to start).
import ssh2 from "ssh2"
import type { ParsedKey } from "ssh2"
import { fingerprint } from "./Fingerprint.js"
import { interpretOptions, type KeyRestrictions } from "./KeyOptions.js"

export interface KeyOption {
  readonly name: string
  /** The unquoted value of `name="value"`; undefined for flags like `restrict`. */
  readonly value?: string
}

export interface AuthorizedKey {
  readonly type: string
  /** The public key blob (what an SSH client sends as the key data). */
  readonly data: Buffer
  readonly key: ParsedKey
  readonly fingerprint: string
  readonly comment: string
  readonly options: ReadonlyArray<KeyOption>
  /** What the options mean: enforced at every login. */
  readonly restrictions: KeyRestrictions
  /** 1-based line number in the file. */
  readonly line: number
}

export interface ParseProblem {
  readonly line: number
  readonly message: string
  /** An option we cannot honour: ignoring the line would drop a restriction the admin asked for. */
  readonly fatal?: boolean
}

export interface ParsedAuthorizedKeys {
  readonly keys: ReadonlyArray<AuthorizedKey>
  readonly problems: ReadonlyArray<ParseProblem>
}

const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/

/** Splits the options field at unquoted commas; quoted values may contain commas, spaces and \". */
export const parseOptions = (text: string): ReadonlyArray<KeyOption> | string => {
  const out: Array<KeyOption> = []
  let i = 0
  while (i < text.length) {
    const m = /^[A-Za-z0-9_-]+/.exec(text.slice(i))
    if (!m) return `bad option syntax at "${text.slice(i, i + 20)}"`
    const name = m[0]
    i += name.length
    if (text[i] === "=") {
      if (text[i + 1] !== '"') return `option ${name} needs a quoted value`
      i += 2
      let value = ""
      for (;;) {
        if (i >= text.length) return `unterminated quote in option ${name}`
        const c = text[i]!
        if (c === "\\" && text[i + 1] === '"') {
          value += '"'
          i += 2
        } else if (c === '"') {
          i++
          break
        } else {
          value += c
          i++
        }
      }
      out.push({ name, value })
    } else {
      out.push({ name })
    }
    if (i < text.length) {
      if (text[i] !== ",") return `bad option syntax after ${name}`
      i++
    }
  }
  return out
}

/** Returns the options field (up to the first unquoted whitespace) and the rest of the line. */
export const splitOptions = (line: string): [string, string] => {
  let inQuote = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === "\\" && inQuote) {
      i++
    } else if (c === '"') {
      inQuote = !inQuote
    } else if (!inQuote && (c === " " || c === "\t")) {
      return [line.slice(0, i), line.slice(i).trimStart()]
    }
  }
  return [line, ""]
}

const parseLine = (raw: string, lineNo: number): AuthorizedKey | ParseProblem | undefined => {
  const line = raw.trim()
  if (line === "" || line.startsWith("#")) return undefined
  let options: ReadonlyArray<KeyOption> = []
  let rest = line
  const first = line.split(/[ \t]/, 1)[0]!
  if (!KEY_TYPE.test(first)) {
    // `newtype AAAA…`: a key type we do not know (not options): skip the line, as before.
    if (/^[A-Za-z0-9@._-]+[ \t]+AAAA/.test(line)) return { line: lineNo, message: `unknown key type "${first}"` }
    const [opts, after] = splitOptions(line)
    const parsed = parseOptions(opts)
    if (typeof parsed === "string") return { line: lineNo, message: parsed, fatal: true }
    options = parsed
    rest = after
  }
  const [type, b64, ...commentWords] = rest.split(/[ \t]+/)
  if (type === undefined || !KEY_TYPE.test(type)) return { line: lineNo, message: `unknown key type "${type ?? ""}"` }
  if (b64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return { line: lineNo, message: "missing or bad base64 key" }
  const parsed = ssh2.utils.parseKey(`${type} ${b64}`)
  if (parsed instanceof Error) return { line: lineNo, message: `cannot parse ${type} key: ${parsed.message}` }
  const restrictions = interpretOptions(options)
  if (typeof restrictions === "string") return { line: lineNo, message: restrictions, fatal: true }
  const data = Buffer.from(b64, "base64")
  // The blob names its own type; a line claiming another type is not what it says.
  const inner = data.length >= 4 ? data.subarray(4, 4 + data.readUInt32BE(0)).toString("latin1") : ""
  if (inner !== type) return { line: lineNo, message: `key type ${type} does not match the key data (${inner})` }
  return {
    type,
    data,
    key: parsed,
    fingerprint: fingerprint(data),
    comment: commentWords.join(" "),
    options,
    restrictions,
    line: lineNo
  }
}

export const parseAuthorizedKeys = (text: string): ParsedAuthorizedKeys => {
  const keys: Array<AuthorizedKey> = []
  const problems: Array<ParseProblem> = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const r = parseLine(raw, i + 1)
    if (r === undefined) return
    if ("message" in r) problems.push(r)
    else keys.push(r)
  })
  return { keys, problems }
}
