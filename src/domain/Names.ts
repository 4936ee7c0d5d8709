// Name rules shared by every program. The registry enforces them; clients check them early.
import { Schema } from "effect"

const byteLength = (s: string) => Buffer.byteLength(s, "utf8")
// Cc: C0, DEL and C1 (U+0080–U+009F, e.g. U+009B CSI, a terminal escape on its own).
const controlChars = /\p{Cc}/u
// Cf: bidi overrides, zero-width and other invisible format characters: a name must look like what it is.
const formatChars = /\p{Cf}/u
// Under /u a lone surrogate is one code point of category Cs; paired ones form a single astral character.
const loneSurrogate = /\p{Cs}/u

/** Why a name is not acceptable, or undefined when it is. `kind` words the message. */
const commonProblem = (kind: string, s: string): string | undefined => {
  if (s.length === 0) return `${kind} name cannot be empty`
  if (controlChars.test(s)) return `${kind} name cannot contain control characters`
  if (formatChars.test(s)) return `${kind} name cannot contain invisible format characters (bidi, zero-width)`
  if (loneSurrogate.test(s)) return `${kind} name cannot contain unpaired surrogates`
  if (s === "." || s === "..") return `${kind} name cannot be "." or ".."`
  if (byteLength(s) > 255) return `${kind} name cannot be longer than 255 bytes`
  return undefined
}

export const componentNameProblem = (s: string): string | undefined =>
  commonProblem("component", s) ?? (s.includes(":") ? "name cannot contain : symbol" : undefined)

export const configurationNameProblem = (s: string): string | undefined =>
  commonProblem("configuration", s) ?? (s.includes("/") ? "name cannot contain / symbol" : undefined)

export const versionProblem = (s: string): string | undefined => commonProblem("version", s)

const refined = (problem: (s: string) => string | undefined, identifier: string) =>
  Schema.String.pipe(
    Schema.filter((s) => problem(s) ?? true, { identifier }),
    Schema.brand(identifier)
  )

export const ComponentName = refined(componentNameProblem, "ComponentName")
export type ComponentName = typeof ComponentName.Type
export const ConfigurationName = refined(configurationNameProblem, "ConfigurationName")
export type ConfigurationName = typeof ConfigurationName.Type
export const Version = refined(versionProblem, "Version")
export type Version = typeof Version.Type

export const sha256Problem = (s: string): string | undefined =>
  /^[0-9a-f]{64}$/.test(s) ? undefined : "hash should be a hex representation of content sha256 sum, 64 chars long"

/** Lowercase hex sha256. */
export const Sha256 = refined(sha256Problem, "Sha256").annotations({
  // Random strings never match; generate hex directly so Arbitrary.make works on documents (property tests).
  arbitrary: () => (fc) => fc.stringMatching(/^[0-9a-f]{64}$/).map((s) => s as Sha256)
})
export type Sha256 = typeof Sha256.Type
