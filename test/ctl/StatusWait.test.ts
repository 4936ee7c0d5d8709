// The verdict of `deployctl status -wait` on one `status -json` answer (StatusWait.ts).
import { describe, expect, it } from "vitest"
import { verdict } from "../../src/ctl/StatusWait.js"

const host = (State: string, Connected = true, Kind = "agent") => ({ Host: "h", Kind, State, Connected })

describe("status -wait verdict", () => {
  it("done when every connected agent is current, failed as soon as one failed, else waiting", () => {
    expect(verdict({ Hosts: [host("current"), host("current")] })).toEqual({ _tag: "Done", ok: true })
    // offline hosts and hosts that only poll do not hold the gate
    expect(verdict({ Hosts: [host("current"), host("offline", false), host("behind", false, "poll")] })).toEqual({ _tag: "Done", ok: true })
    expect(verdict({ Hosts: [host("current"), host("failed")] })).toEqual({ _tag: "Done", ok: false })
    expect(verdict({ Hosts: [host("current"), host("deploying")] })).toEqual({ _tag: "Waiting", line: "waiting: 1 of 2 connected host(s) current" })
    expect(verdict({ Hosts: [host("behind")] })._tag).toBe("Waiting")
    expect(verdict({ Hosts: [] })).toEqual({ _tag: "Waiting", line: "waiting: no host is connected" })
  })
})
