// The watch session's wire format (domain/Report.ts): what the registry accepts from an agent.
import { Either, FastCheck as fc } from "effect"
import { describe, expect, it } from "vitest"
import { decodeAgentLine, encodeAgentLine, hostNameProblem, parseWatch, Report } from "../../src/domain/Report.js"

const hash = "a".repeat(64)
const line = (report: Record<string, unknown>) =>
  JSON.stringify({ type: "report", report: { host: "web1", agentVersion: "0.1.0", configuration: "p", hash, outcome: "deployed", ...report } })

describe("report lines", () => {
  it("accepts every outcome other helpers produce, and round-trips", () => {
    for (const outcome of ["deploying", "deployed", "failed", "unpack-refused", "download-failed", "rolled-back", "refused"]) {
      const d = decodeAgentLine(line({ outcome, reason: "untrusted signer", lines: ["a", "b"], started: "2026-01-01T00:00:00Z", durationMs: 12 }))
      expect(Either.isRight(d), outcome).toBe(true)
      if (Either.isRight(d)) expect(decodeAgentLine(encodeAgentLine(d.right))).toEqual(d)
    }
    expect(Either.isRight(decodeAgentLine(line({ hash: "" })))).toBe(true) // before the first deploy
    expect(Either.isRight(decodeAgentLine('{"type":"ping"}'))).toBe(true)
  })

  it("refuses bad names, hashes, outcomes, and anything unbounded", () => {
    const bad = [
      line({ host: "" }),
      line({ host: "a\nb" }),
      line({ host: "x".repeat(254) }),
      line({ agentVersion: "\u001b[31m" }),
      line({ configuration: "a/b" }),
      line({ hash: "ZZ" }),
      line({ target: "abc" }),
      line({ outcome: "exploded" }),
      line({ reason: "r".repeat(501) }),
      line({ lines: Array.from({ length: 21 }, () => "x") }),
      line({ lines: ["x".repeat(301)] }),
      line({ durationMs: -1 }),
      line({ durationMs: 1.5 }),
      '{"type":"shell","command":"rm -rf /"}',
      "not json"
    ]
    for (const b of bad) expect(Either.isLeft(decodeAgentLine(b)), b.slice(0, 80)).toBe(true)
  })

  it("a host name is 1..253 bytes without control or format characters", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 60 }), (s) => {
        const ok = hostNameProblem(s) === undefined
        expect(ok).toBe(!/[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u.test(s))
        if (ok) expect(() => new Report({ host: s, agentVersion: "1", configuration: "p", hash: "", outcome: "deployed" })).not.toThrow()
      }),
      { seed: 17 }
    )
  })

  it("the watch command: -name, -host and -version, validated", () => {
    expect(parseWatch(["watch", "-name", "p", "-host", "web1", "-version", "0.1.0"])).toEqual(Either.right({ name: "p", host: "web1", version: "0.1.0" }))
    expect(Either.isLeft(parseWatch(["watch", "-name", "a/b", "-host", "h", "-version", "1"]))).toBe(true)
    expect(Either.isLeft(parseWatch(["watch", "-name", "p", "-version", "1"]))).toBe(true)
    expect(Either.isLeft(parseWatch(["watch", "-name", "p", "-host", "h", "-version", "1", "extra"]))).toBe(true)
    expect(Either.isLeft(parseWatch(["showconf", "-name", "p"]))).toBe(true)
  })
})
