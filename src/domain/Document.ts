// The configuration document agents read from /configs/<name>.json (DESIGN.md): exact keys, tab-indented.
import { Effect, ParseResult, Schema } from "effect"
import { DocumentError } from "./Errors.js"
import { ComponentName, ConfigurationName, Sha256, Version } from "./Names.js"
import { rfc3339Nano } from "./Time.js"

/** RFC 3339 with fractional seconds, UTC, as Go's RFC3339Nano prints it. */
export const Rfc3339 = Schema.transformOrFail(Schema.String, Schema.DateFromSelf, {
  strict: true,
  decode: (s, _, ast) => {
    const d = new Date(s)
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s) && !Number.isNaN(d.getTime())
      ? ParseResult.succeed(d)
      : ParseResult.fail(new ParseResult.Type(ast, s, "expected an RFC 3339 time"))
  },
  encode: (d) => ParseResult.succeed(rfc3339Nano(d))
}).annotations({
  // Only 4-digit years print as RFC 3339 (toISOString gives "+010000-…" beyond); property tests stay in range.
  arbitrary: () => (fc) =>
    fc.date({ min: new Date("0001-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59.999Z"), noInvalidDate: true })
})

export class DocumentLayer extends Schema.Class<DocumentLayer>("DocumentLayer")({
  Name: ComponentName,
  Version: Version,
  File: Schema.String,
  Hash: Sha256,
  Ctime: Rfc3339
}) {}

export class ConfigurationDocument extends Schema.Class<ConfigurationDocument>("ConfigurationDocument")({
  Name: ConfigurationName,
  Mtime: Rfc3339,
  Hash: Sha256,
  Layers: Schema.Array(DocumentLayer)
}) {}

const Json = Schema.parseJson(ConfigurationDocument)

/** Tab-indented JSON with the keys in contract order. */
export const encodeDocument = (doc: ConfigurationDocument): string =>
  JSON.stringify(Schema.encodeSync(ConfigurationDocument)(doc), null, "\t") + "\n"

export const decodeDocument = (text: string): Effect.Effect<ConfigurationDocument, DocumentError> =>
  Schema.decodeUnknown(Json)(text).pipe(
    Effect.mapError((e) => new DocumentError({ message: `bad configuration document: ${ParseResult.TreeFormatter.formatErrorSync(e)}` }))
  )

/** The path, relative to the agent view's root, at which a layer's blob is served. */
export const blobFile = (hash: string): string => `files/${hash}`
