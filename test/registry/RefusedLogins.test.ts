import { describe, expect, it } from "vitest"
import { Attempts, makeLimiter } from "../../src/registry/RefusedLogins.js"

describe("refused login lines", () => {
  it("one line per connection: each key offered with its reason, quoted user, a bounded list", () => {
    const a = new Attempts(2)
    a.add({ user: "root\n", fingerprint: "SHA256:a", reason: "key not listed" })
    a.add({ user: "root\n", fingerprint: "SHA256:a", reason: "bad signature" }) // the signed try refines the query's reason
    a.add({ user: "root\n", fingerprint: "SHA256:b", reason: "key not listed" })
    a.add({ user: "root\n", fingerprint: "SHA256:c", reason: "key not listed" })
    expect(a.describe("1.2.3.4:5")).toBe(
      'refused login from 1.2.3.4:5: user "root\\x0a" key SHA256:a (bad signature); user "root\\x0a" key SHA256:b (key not listed); and 1 more key(s)'
    )
  })

  it("rate-limited: a burst per window, and the next line counts what was left out", () => {
    let now = 0
    const limit = makeLimiter(2, 1000, () => now)
    expect(limit("a")).toBe("a")
    expect(limit("b")).toBe("b")
    expect(limit("c")).toBeUndefined()
    expect(limit("d")).toBeUndefined()
    now = 1000
    expect(limit("e")).toBe("e (2 refused login(s) not logged before this one: rate limit)")
    expect(limit("f")).toBe("f")
  })
})
