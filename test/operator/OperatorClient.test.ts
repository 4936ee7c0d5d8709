import { ConfigProvider, Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { operatorEnv } from "../../src/operator/OperatorClient.js"

const read = (env: Record<string, string>) =>
  Effect.runSync(operatorEnv.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("operatorEnv", () => {
  it("reads what deployctl and deploy-from-docker take from the environment through Config, not process.env", () => {
    const e = read({ DEPLOYCTL_ADDR: "reg:2022", DEPLOYCTL_FINGERPRINT: "SHA256:x", SSH_AUTH_SOCK: "/s", DEPLOYCTL_KEY: "/k", HOME: "/h", USER: "u" })
    expect(e).toEqual({
      addr: Option.some("reg:2022"), fingerprint: Option.some("SHA256:x"), agentSocket: Option.some("/s"), envKey: Option.some("/k"),
      home: "/h", user: Option.some("u")
    })
    const none = read({})
    expect([none.addr, none.fingerprint, none.agentSocket, none.envKey, none.user].every(Option.isNone)).toBe(true)
  })
})
