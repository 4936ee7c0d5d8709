import { describe, expect, it } from "vitest"
import { compileFrom, sourceAddressAllows } from "../../src/ssh/AddressMatch.js"
import { interpretOptions, parseExpiryTime } from "../../src/ssh/KeyOptions.js"

const from = (list: string) => {
  const f = compileFrom(list)
  if (typeof f === "string") throw new Error(f)
  return f
}

describe("from= (sshd's match_host_and_ip, no DNS)", () => {
  it("matches addresses, CIDR networks and patterns; a negated match refuses", () => {
    expect(from("10.9.9.9")("127.0.0.1")).toBe(false)
    expect(from("10.9.9.9")("10.9.9.9")).toBe(true)
    expect(from("10.0.0.0/8")("10.255.0.1")).toBe(true)
    expect(from("10.0.0.0/8")("11.0.0.1")).toBe(false)
    expect(from("127.0.0.?")("127.0.0.1")).toBe(true)
    expect(from("127.0.0.?")("127.0.0.10")).toBe(false)
    expect(from("!127.0.0.1,*")("127.0.0.1")).toBe(false)
    expect(from("!127.0.0.1,*")("127.0.0.2")).toBe(true)
    expect(from("*,!10.0.0.0/8")("10.1.1.1")).toBe(false)
    expect(from("::1")("::1")).toBe(true)
    expect(from("2001:db8::/32")("2001:db8:1::5")).toBe(true)
    expect(from("2001:db8::/32")("2001:db9::5")).toBe(false)
    // An IPv4 client on a dual-stack socket is still an IPv4 client.
    expect(from("127.0.0.0/8")("::ffff:127.0.0.1")).toBe(true)
    expect(from("10.0.0.1")("::ffff:127.0.0.1")).toBe(false)
  })

  it("refuses lists sshd would not match", () => {
    expect(compileFrom("10.0.0.1/8")).toMatch(/bits set beyond its mask/)
    expect(compileFrom("10.0.0.0/33")).toMatch(/bad mask length/)
    expect(compileFrom("a,,b")).toMatch(/empty pattern/)
  })

  it("source-address takes CIDR only and fails closed on anything else", () => {
    expect(sourceAddressAllows("127.0.0.0/8,::1", "127.0.0.1")).toBe(true)
    expect(sourceAddressAllows("10.9.9.0/24", "127.0.0.1")).toBe(false)
    expect(sourceAddressAllows("127.0.0.*", "127.0.0.1")).toBe(false)
  })
})

describe("option interpretation", () => {
  it("expiry-time: YYYYMMDD[HHMM[SS]], local time unless Z", () => {
    expect(parseExpiryTime("20300102Z")?.toISOString()).toBe("2030-01-02T00:00:00.000Z")
    expect(parseExpiryTime("203001021530Z")?.toISOString()).toBe("2030-01-02T15:30:00.000Z")
    expect(parseExpiryTime("20300102153045Z")?.toISOString()).toBe("2030-01-02T15:30:45.000Z")
    expect(parseExpiryTime("20300102")?.getTime()).toBe(new Date(2030, 0, 2).getTime())
    for (const bad of ["2030", "20300231", "2030010225", "tomorrow", "20300102 "]) expect(parseExpiryTime(bad)).toBeUndefined()
  })

  it("restrict and no-pty take the pty away, a later pty gives it back; names are case-insensitive", () => {
    const r = (opts: Array<{ name: string; value?: string }>) => interpretOptions(opts)
    expect(r([{ name: "restrict" }])).toMatchObject({ pty: false })
    expect(r([{ name: "restrict" }, { name: "pty" }])).toMatchObject({ pty: true })
    expect(r([{ name: "No-PTY" }])).toMatchObject({ pty: false })
    expect(r([{ name: "COMMAND", value: "help" }])).toMatchObject({ command: "help" })
    expect(r([{ name: "command", value: "a" }, { name: "command", value: "b" }])).toBe("option command given twice")
    expect(r([{ name: "expiry-time", value: "20300101Z" }, { name: "expiry-time", value: "20200101Z" }])).toMatchObject({
      expiresAt: new Date("2020-01-01T00:00:00Z")
    })
    expect(r([{ name: "cert-authority" }, { name: "principals", value: "a,b" }])).toMatchObject({ certAuthority: true, principals: ["a", "b"] })
    expect(r([{ name: "permitopen", value: "host:80" }, { name: "no-port-forwarding" }])).toMatchObject({ pty: true })
    expect(r([{ name: "environment", value: "A=b" }])).toMatch(/not supported/)
  })
})
