import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Effect, Exit, FastCheck as fc } from "effect"
import { ConfigurationDocument, decodeDocument, DocumentLayer, encodeDocument } from "../../src/domain/Document.js"
import type { ComponentName, ConfigurationName, Sha256, Version } from "../../src/domain/Names.js"

const h1 = "1".repeat(64) as Sha256
const h2 = "2".repeat(64) as Sha256

const doc = new ConfigurationDocument({
  Name: "project1" as ConfigurationName,
  Mtime: new Date("2017-03-01T11:28:18.120Z"),
  Hash: "c".repeat(64) as Sha256,
  Layers: [
    new DocumentLayer({
      Name: "code" as ComponentName,
      Version: "v01" as Version,
      File: `files/${h1}`,
      Hash: h1,
      Ctime: new Date("2017-03-01T11:23:36Z")
    }),
    new DocumentLayer({
      Name: "config" as ComponentName,
      Version: "v02" as Version,
      File: `files/${h2}`,
      Hash: h2,
      Ctime: new Date("2017-03-01T11:24:00.5Z")
    })
  ]
})

const text = `{
\t"Name": "project1",
\t"Mtime": "2017-03-01T11:28:18.12Z",
\t"Hash": "${"c".repeat(64)}",
\t"Layers": [
\t\t{
\t\t\t"Name": "code",
\t\t\t"Version": "v01",
\t\t\t"File": "files/${h1}",
\t\t\t"Hash": "${h1}",
\t\t\t"Ctime": "2017-03-01T11:23:36Z"
\t\t},
\t\t{
\t\t\t"Name": "config",
\t\t\t"Version": "v02",
\t\t\t"File": "files/${h2}",
\t\t\t"Hash": "${h2}",
\t\t\t"Ctime": "2017-03-01T11:24:00.5Z"
\t\t}
\t]
}
`

const decodeError = (s: string) =>
  Effect.runSync(
    decodeDocument(s).pipe(
      Effect.flip,
      Effect.map((e) => e.message)
    )
  )

describe("configuration document", () => {
  it("encodes tab-indented with the contract's key order and Go's fractional seconds", () => {
    expect(encodeDocument(doc)).toBe(text)
  })

  it("decodes what it encodes", () => {
    expect(Effect.runSync(decodeDocument(text))).toEqual(doc)
  })

  it("accepts documents written by the original (other offsets, nanoseconds)", () => {
    const original = text.replace("2017-03-01T11:28:18.12Z", "2017-03-01T13:28:18.120000001+02:00")
    expect(Effect.runSync(decodeDocument(original)).Mtime.toISOString()).toBe("2017-03-01T11:28:18.120Z")
  })

  it("names the bad field in its error", () => {
    expect(decodeError(text.replace(`"Hash": "${h2}"`, `"Hash": "xyz"`))).toMatch(/Hash/)
    expect(decodeError(text.replace(`\t"Mtime": "2017-03-01T11:28:18.12Z",\n`, ""))).toMatch(/Mtime/)
    expect(decodeError(text.replace(`"2017-03-01T11:23:36Z"`, `"yesterday"`))).toMatch(/Ctime/)
    expect(decodeError(text.replace(`"Name": "project1"`, `"Name": "a/b"`))).toMatch(/Name/)
    expect(decodeError("{not json")).toMatch(/bad configuration document/)
  })

  it("round-trips any valid document (property)", () => {
    fc.assert(
      fc.property(Arbitrary.make(ConfigurationDocument), (d) => {
        const back = Effect.runSyncExit(decodeDocument(encodeDocument(d)))
        expect(back).toEqual(Exit.succeed(d))
      }),
      { numRuns: 100 }
    )
  })
})
