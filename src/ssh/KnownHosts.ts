// OpenSSH known_hosts, read-only: deployctl's host-key check when no fingerprint is pinned.
// Understands plain and `[host]:port` names, patterns (`*`, `?`, `!negation`, comma lists),
// hashed names (`|1|base64 salt|base64 HMAC-SHA1(salt, name)`, as `ssh-keygen -H` writes them),
// `@revoked` (a listed key is refused even if another line trusts it) and `@cert-authority`
// (ignored: we do not verify host certificates, so such a line neither trusts nor refuses).
import { Effect } from "effect"
import { createHmac } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { SshError } from "./SshError.js"

export interface KnownHost {
  readonly marker: "revoked" | "cert-authority" | undefined
  /** The host field as written (comma-separated patterns, or one hashed name). */
  readonly hosts: string
  readonly keyType: string
  readonly keyBlob: Buffer
  /** 1-based line number, for messages. */
  readonly line: number
}

/** Parses a known_hosts file's text; malformed lines are skipped, as OpenSSH does. */
export const parse = (text: string): Array<KnownHost> => {
  const out: Array<KnownHost> = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const fields = raw.trim().split(/\s+/)
    if (fields.length === 0 || fields[0] === "" || fields[0]!.startsWith("#")) return
    let marker: KnownHost["marker"]
    if (fields[0]!.startsWith("@")) {
      const m = fields.shift()!
      if (m === "@revoked") marker = "revoked"
      else if (m === "@cert-authority") marker = "cert-authority"
      else return // unknown marker: the line means something we do not understand
    }
    const [hosts, keyType, key] = fields
    if (hosts === undefined || keyType === undefined || key === undefined) return
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key)) return
    const keyBlob = Buffer.from(key, "base64")
    // An SSH key blob starts with its type name; anything else is not a key line.
    if (keyBlob.length < 4 || keyBlob.subarray(4, 4 + keyBlob.readUInt32BE(0)).toString("latin1") !== keyType) return
    out.push({ marker, hosts, keyType, keyBlob, line: i + 1 })
  })
  return out
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise (host lowercased). */
export const hostName = (host: string, port: number): string => {
  const h = host.toLowerCase()
  return port === 22 ? h : `[${h}]:${port}`
}

const globToRegExp = (pattern: string): RegExp =>
  new RegExp(
    "^" +
      pattern
        .split("")
        .map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
        .join("") +
      "$",
    "i"
  )

const hashedMatches = (hashed: string, name: string): boolean => {
  const parts = hashed.split("|") // ["", "1", salt, hash]
  if (parts.length !== 4 || parts[1] !== "1") return false
  const salt = Buffer.from(parts[2]!, "base64")
  const want = Buffer.from(parts[3]!, "base64")
  const got = createHmac("sha1", salt).update(name).digest()
  return want.length === got.length && want.equals(got)
}

/** Does the entry's host field name `name` (as built by hostName)? */
export const matchesHost = (entry: KnownHost, name: string): boolean => {
  if (entry.hosts.startsWith("|")) return hashedMatches(entry.hosts, name)
  let matched = false
  for (const pattern of entry.hosts.split(",")) {
    if (pattern === "") continue
    const negated = pattern.startsWith("!")
    const re = globToRegExp(negated ? pattern.slice(1) : pattern)
    if (re.test(name)) {
      if (negated) return false // a matching negation excludes the host, whatever else matches
      matched = true
    }
  }
  return matched
}

export type Verdict = "trusted" | "mismatch" | "unknown" | "revoked"

/**
 * trusted: a line for this host lists this key; revoked: an @revoked line lists this key;
 * mismatch: lines for this host exist but none lists this key; unknown: no line for this host.
 */
export const check = (entries: ReadonlyArray<KnownHost>, host: string, port: number, keyBlob: Uint8Array): Verdict => {
  const name = hostName(host, port)
  const key = Buffer.from(keyBlob)
  // A revoked key is refused for every host its line names (often "*").
  if (entries.some((e) => e.marker === "revoked" && e.keyBlob.equals(key) && matchesHost(e, name))) return "revoked"
  const forHost = entries.filter((e) => e.marker === undefined && matchesHost(e, name))
  if (forHost.some((e) => e.keyBlob.equals(key))) return "trusted"
  return forHost.length > 0 ? "mismatch" : "unknown"
}

/** ~/.ssh/known_hosts, with $HOME respected (tests and containers set it). */
export const defaultPath = (home: string = process.env.HOME || os.homedir()): string => path.join(home, ".ssh", "known_hosts")

/** Reads and parses a known_hosts file; a missing file is an empty list. */
export const load = (file: string): Effect.Effect<Array<KnownHost>, SshError> =>
  Effect.tryPromise({
    try: () => fs.readFile(file, "utf8"),
    catch: (cause) => cause as NodeJS.ErrnoException
  }).pipe(
    Effect.map(parse),
    Effect.catchAll((cause) =>
      cause.code === "ENOENT"
        ? Effect.succeed([])
        : Effect.fail(new SshError({ reason: "HostKey", message: `cannot read ${file}: ${cause.message}`, cause }))
    )
  )
