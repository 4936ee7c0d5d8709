import { Duration } from "effect"
import { describe, expect, it } from "vitest"
import { parseArgs, parseListenAddress, usage } from "../../src/registry/Flags.js"

const serve = (args: Array<string>) => {
  const r = parseArgs(args)
  if (r._tag !== "Serve") throw new Error(`expected Serve, got ${JSON.stringify(r)}`)
  return r.flags
}

describe("registry flags", () => {
  it("has the original defaults", () => {
    const f = serve([])
    expect(f).toMatchObject({
      addr: "localhost:2022", host: "localhost", port: 2022, dir: "/var/lib/deploy-registry",
      opauth: "/etc/deploy-registry/operator.keys", srvauth: "/etc/deploy-registry/service.keys", maxver: 10, dev: false
    })
    expect(Duration.toMillis(f.deadline)).toBe(30 * 60_000)
  })

  it("accepts -flag value, -flag=value, --flag value and --flag=value", () => {
    const f = serve(["-addr", "127.0.0.1:0", "--dir=/d", "--maxver", "3", "-deadline=1h30m", "-opauth=/o", "--srvauth", "/s"])
    expect(f).toMatchObject({ host: "127.0.0.1", port: 0, dir: "/d", maxver: 3, opauth: "/o", srvauth: "/s" })
    expect(Duration.toMillis(f.deadline)).toBe(90 * 60_000)
  })

  it("-metrics: off by default, loopback only unless -metrics-public", () => {
    expect(serve([]).metrics).toBeUndefined()
    expect(serve(["-metrics", "127.0.0.1:9110"]).metrics).toEqual({ host: "127.0.0.1", port: 9110 })
    expect(serve(["-metrics", "[::1]:0"]).metrics).toEqual({ host: "::1", port: 0 })
    expect(serve(["-metrics", "localhost:9110"]).metrics).toEqual({ host: "localhost", port: 9110 })
    for (const addr of [":9110", "0.0.0.0:9110", "10.1.2.3:9110", "[::]:9110", "example.org:9110"]) {
      const r = parseArgs(["-metrics", addr])
      expect(r._tag).toBe("Usage")
      expect(r._tag === "Usage" && r.message).toMatch(/not a loopback address; add -metrics-public/)
      expect(serve(["-metrics", addr, "-metrics-public"]).metrics).toBeDefined()
    }
    expect(parseArgs(["-metrics", "9110"])).toMatchObject({ _tag: "Usage", message: expect.stringMatching(/expected host:port/) })
  })

  it("dev mode moves the defaults into ./.dev-registry; explicit flags win", () => {
    expect(serve(["-dev"])).toMatchObject({ dev: true, dir: ".dev-registry", opauth: ".dev-registry/operator.keys", srvauth: ".dev-registry/service.keys" })
    expect(serve(["-dev", "-dir", "/x"])).toMatchObject({ dir: "/x", opauth: "/x/operator.keys" })
    expect(serve(["-dev=false"]).dev).toBe(false)
  })

  it("has finite limits by default, and takes sizes with K/M/G/T", () => {
    expect(serve([]).limits).toEqual({
      maxConns: 2048, maxConnsPerSource: 128, maxSessions: 10, maxHandles: 256, maxHandlesPerKey: 4096,
      maxUpload: 16 * 1024 ** 3, maxUploadsPerKey: 64
    })
    expect(serve(["-max-upload", "512M", "-max-sessions=2"]).limits).toMatchObject({ maxUpload: 512 * 1024 ** 2, maxSessions: 2 })
    expect(serve(["-max-upload", "1000"]).limits.maxUpload).toBe(1000)
    const r = parseArgs(["-max-upload", "lots"])
    expect(r._tag === "Usage" && r.message).toMatch(/^invalid value "lots" for flag -max-upload/)
  })

  it("reports usage errors in one line", () => {
    const msg = (args: Array<string>) => {
      const r = parseArgs(args)
      return r._tag === "Usage" ? r.message : `not a usage error: ${r._tag}`
    }
    expect(msg(["-bogus"])).toBe("flag provided but not defined: -bogus")
    expect(msg(["-addr"])).toBe("flag needs an argument: -addr")
    expect(msg(["-maxver", "ten"])).toMatch(/^invalid value "ten" for flag -maxver/)
    expect(msg(["-deadline", "30"])).toMatch(/^invalid value "30" for flag -deadline/)
    expect(msg(["-addr", "nohost"])).toMatch(/expected host:port/)
    expect(msg(["extra"])).toBe('unexpected argument "extra"')
  })

  it("-h and --help print every flag with its default", () => {
    for (const h of ["-h", "--help", "-help"]) expect(parseArgs([h])._tag).toBe("Help")
    const text = usage()
    for (const s of ["-addr string", 'default "localhost:2022"', "-deadline duration", "default 30m", "-maxver int", "default 10", "-opauth", "-srvauth", "-dir", "verify -dir DIR"]) {
      expect(text).toContain(s)
    }
  })

  it("verify takes -dir", () => {
    expect(parseArgs(["verify", "-dir", "/d"])).toEqual({ _tag: "Verify", dir: "/d" })
    expect(parseArgs(["verify", "-addr", "x:1"])._tag).toBe("Usage")
  })

  it("-db (else $DATABASE_URL) takes a postgres:// URL; without either, SQLite in -dir", () => {
    const url = "postgres://registry@db.internal:5432/deploy"
    expect(serve([]).db).toBeUndefined()
    expect(serve(["-db", url]).db).toBe(url)
    expect(serve([]).cacheMax).toBe(10 * 1024 ** 3)
    expect(serve(["-cache-max", "512M"]).cacheMax).toBe(512 * 1024 ** 2)
    const fromEnv = parseArgs([], { DATABASE_URL: "postgresql://h/d" })
    expect(fromEnv._tag === "Serve" && fromEnv.flags.db).toBe("postgresql://h/d")
    const flagWins = parseArgs(["-db", url], { DATABASE_URL: "postgresql://h/d" })
    expect(flagWins._tag === "Serve" && flagWins.flags.db).toBe(url)
    expect(parseArgs(["-db", "/var/lib/x.db"])).toMatchObject({ _tag: "Usage", message: expect.stringMatching(/expected a postgres:\/\/ or postgresql:\/\/ URL/) })
    expect(parseArgs([], { DATABASE_URL: "mysql://h/d" })).toMatchObject({ _tag: "Usage", message: expect.stringMatching(/DATABASE_URL/) })
    expect(parseArgs(["verify", "-db", url])).toEqual({ _tag: "Verify", dir: "/var/lib/deploy-registry", db: url })
    expect(usage()).toContain("  -db string\n")
  })
})

describe("parsers", () => {
  it("listen addresses", () => {
    expect(parseListenAddress(":2022")).toEqual({ host: "", port: 2022 })
    expect(parseListenAddress("[::1]:0")).toEqual({ host: "::1", port: 0 })
    expect(parseListenAddress("localhost:70000")).toBeUndefined()
    expect(parseListenAddress("localhost")).toBeUndefined()
  })
})
