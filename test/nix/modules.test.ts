// nix/modules: evaluated with nixpkgs' lib.evalModules (nix/tests/eval-modules.nix, stand-ins for the
// NixOS options they set), directly and through the flake's nixosModules and its VM test's machines;
// then the generated units are checked: ExecStart, the sandbox against
// deploy/systemd/deploy-registry.service, and `systemd-analyze verify` on the units rendered the way
// NixOS renders them. (The VM test itself needs a real nixpkgs and KVM.) Needs nix-instantiate and a nixpkgs lib: NIXPKGS_LIB, else the stand-in's in
// ../shared/nix-offline/stub/lib. CI has both and must not skip (CI is set there).
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { readFile, rm, writeFile } from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { repoRoot } from "../support/registry.js"
import { addExecutable, makeVerifyRoot, systemdAnalyze, verifyUnits } from "../support/systemd.js"

const run = promisify(execFile)
const nixLib = process.env.NIXPKGS_LIB ?? path.resolve(repoRoot, "../shared/nix-offline/stub/lib")
const nixInstantiate = ["/usr/bin/nix-instantiate", "/nix/var/nix/profiles/default/bin/nix-instantiate"].find(existsSync)
const canRun = (nixInstantiate !== undefined && existsSync(nixLib)) || process.env.CI !== undefined

type Value = string | number | boolean | ReadonlyArray<string>
interface Unit {
  readonly description: string
  readonly wantedBy: ReadonlyArray<string>
  readonly after: ReadonlyArray<string>
  readonly wants: ReadonlyArray<string>
  readonly serviceConfig: Record<string, Value>
}
interface Case {
  readonly services: Record<string, Unit>
  readonly users: ReadonlyArray<string>
  readonly groups: ReadonlyArray<string>
  readonly tmpfiles: ReadonlyArray<string>
  readonly firewall: ReadonlyArray<number>
  readonly failedAssertions: ReadonlyArray<string>
}
type Cases = Record<"registry" | "registryDataDir" | "registryDisabled" | "registryBothKeys" | "agent" | "agentStoreKey" | "flakeDefault", Case> & {
  readonly vm: { readonly name: string; readonly testScript: string; readonly registry: Case; readonly server: Case }
  /** the stand-in package's store path (toJSON of a derivation is its outPath) */
  readonly package: string
}

/** A unit file as NixOS writes one: booleans as true/false, a list as one line per element. */
const render = (u: Unit): string => {
  const line = (k: string, v: Value) => (Array.isArray(v) ? v.map((x) => `${k}=${x}`) : [`${k}=${String(v)}`])
  return [
    "[Unit]",
    `Description=${u.description}`,
    ...line("After", u.after),
    ...line("Wants", u.wants),
    "[Service]",
    ...Object.entries(u.serviceConfig).flatMap(([k, v]) => line(k, v)),
    "[Install]",
    ...line("WantedBy", u.wantedBy),
    ""
  ].join("\n")
}

/** [Service] of a unit file as key -> values (a key may repeat), continuation lines joined. */
const serviceSection = (text: string): Map<string, Array<string>> => {
  const joined = text.replace(/\\\n\s*/g, " ")
  const section = /^\[Service\]\n([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(joined)![1]!
  const out = new Map<string, Array<string>>()
  for (const l of section.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(l.trim())
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!])
  }
  return out
}
/** A setting's words: `A B` on one line and `A`, `B` on two mean the same to systemd here. */
const words = (lines: ReadonlyArray<string>): Array<string> => lines.join(" ").split(/\s+/).filter((w) => w !== "")
const asLines = (v: Value | undefined): Array<string> =>
  v === undefined ? [] : Array.isArray(v) ? v.map(String) : [typeof v === "boolean" ? (v ? "yes" : "no") : String(v)]

describe.runIf(canRun)("NixOS modules", () => {
  let cases: Cases
  const roots: Array<string> = []
  beforeAll(async () => {
    expect(nixInstantiate, "nix-instantiate (Debian: nix-bin)").toBeDefined()
    expect(existsSync(nixLib), `nixpkgs lib at ${nixLib}`).toBe(true)
    const { stdout } = await run(nixInstantiate!, [
      "--eval", "--strict", "--json", "--readonly-mode",
      path.join(repoRoot, "nix/tests/eval-modules.nix"),
      "--arg", "lib", `import ${nixLib}`
    ], { maxBuffer: 16 << 20 })
    cases = JSON.parse(stdout)
  })
  afterAll(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true })
  })
  const bin = (name: string) => `${cases.package}/bin/${name}`

  it("registry: ExecStart carries every option, keys from a list go to a store file", () => {
    const c = cases.registry
    expect(Object.keys(c.services)).toEqual(["deploy-registry"])
    const exec = String(c.services["deploy-registry"]!.serviceConfig.ExecStart)
    expect(exec).toMatch(new RegExp(
      `^${bin("deploy-registry")} -addr 10\\.0\\.0\\.5:2200 -dir /var/lib/deploy-registry ` +
        `-opauth /nix/store/[a-z0-9]{32}-deploy-registry-operator\\.keys -srvauth /etc/deploy-registry/service\\.keys ` +
        `-maxver 25 -deadline 1h$`
    ))
    expect(c.services["deploy-registry"]!.serviceConfig).toMatchObject({
      User: "deploy-registry", Group: "deploy-registry", StateDirectory: "deploy-registry", StateDirectoryMode: "0700"
    })
    expect(c.firewall).toEqual([2200])
    expect(c.users).toEqual(["deploy-registry"])
    expect(c.failedAssertions).toEqual([])
  })

  it("registry: the same sandbox and service settings as deploy/systemd/deploy-registry.service", async () => {
    const debian = serviceSection(await readFile(path.join(repoRoot, "deploy/systemd/deploy-registry.service"), "utf8"))
    const nixos = cases.registry.services["deploy-registry"]!.serviceConfig
    // where the two differ by design: NixOS builds the command line and has no /etc keys directory
    const differ = new Set(["ExecStart", "ConfigurationDirectory", "ConfigurationDirectoryMode"])
    const compared = [...debian.keys()].filter((k) => !differ.has(k))
    expect(compared.length).toBeGreaterThan(25)
    for (const k of compared) expect([k, words(asLines(nixos[k]))]).toEqual([k, words(debian.get(k)!)])
  })

  it("registry: another data dir is created by tmpfiles and made writable; no StateDirectory", () => {
    const c = cases.registryDataDir
    const sc = c.services["deploy-registry"]!.serviceConfig
    expect(String(sc.ExecStart)).toContain(" -dir /srv/deploy-registry ")
    expect(sc.StateDirectory).toBeUndefined()
    expect(sc.ReadWritePaths).toEqual(["/srv/deploy-registry"])
    expect(c.tmpfiles).toEqual(["d /srv/deploy-registry 0700 deploy-registry deploy-registry - -"])
    expect(c.firewall).toEqual([])
  })

  it("registry: nothing when disabled; both or neither keys source is refused", () => {
    expect(cases.registryDisabled.services).toEqual({})
    expect(cases.registryDisabled.users).toEqual([])
    expect(cases.registryBothKeys.failedAssertions).toEqual([
      "services.deploy-registry: set exactly one of operatorKeys (at least one key) and operatorKeysFile.",
      "services.deploy-registry: set exactly one of agentKeys (at least one key) and agentKeysFile."
    ])
  })

  it("agent: one unit per enabled instance, flags from the options, key as a credential", () => {
    const c = cases.agent
    expect(Object.keys(c.services).sort()).toEqual(["deploy-agent-site", "deploy-agent-web"])
    const fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
    const site = c.services["deploy-agent-site"]!.serviceConfig
    expect(site.ExecStart).toBe(
      `${bin("deploy-agent")} -name site -addr registry.example.com:2022 -fp ${fp} -key %d/key ` +
        "-dir /var/lib/deploy-agent/site -state /var/lib/deploy-agent/site/state.json " +
        "-script /etc/deploy-agent/site.sh -poll 30s -cleanold"
    )
    expect(site).toMatchObject({
      LoadCredential: ["key:/etc/deploy-agent/id_ed25519"],
      StateDirectory: "deploy-agent/site",
      WorkingDirectory: "/var/lib/deploy-agent/site",
      User: "deploy-agent",
      KillMode: "mixed"
    })
    expect(String(site.ExecReload)).toMatch(/^\/nix\/store\/\S+\/bin\/kill -HUP \$MAINPID$/)
    const web = c.services["deploy-agent-web"]!.serviceConfig
    expect(web.ExecStart).toBe(
      `${bin("deploy-agent")} -name prod-web -addr "[fd00::1]:2022" -fp ${fp} -key %d/key ` +
        '-dir /srv/web -state /srv/web/state.json -script "" -poll 1m'
    )
    expect(web.StateDirectory).toBeUndefined()
    expect(web.ReadWritePaths).toEqual(["/srv/web"])
    expect(c.tmpfiles).toEqual(["d /srv/web 0750 deploy-agent deploy-agent - -"])
    expect(c.services["deploy-agent-web"]!.description).toBe("deploy-agent for configuration prod-web")
    expect(c.failedAssertions).toEqual([])
  })

  it("agent: the registry's sandbox", () => {
    const registry = cases.registry.services["deploy-registry"]!.serviceConfig
    const site = cases.agent.services["deploy-agent-site"]!.serviceConfig
    for (const k of ["NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectProc",
      "RestrictNamespaces", "RestrictSUIDSGID", "RestrictAddressFamilies", "CapabilityBoundingSet", "SystemCallFilter",
      "SystemCallErrorNumber", "LockPersonality", "ProtectKernelTunables", "ProtectControlGroups"]) {
      expect([k, site[k]]).toEqual([k, registry[k]])
    }
  })

  it("agent: a private key in the Nix store is refused", () => {
    expect(cases.agentStoreKey.failedAssertions).toEqual([
      "services.deploy-agent.instances.site.keyFile: a private key must not be in the world-readable Nix store."
    ])
  })

  it("the flake's nixosModules.default has both services, with the flake's package", () => {
    const c = cases.flakeDefault
    expect(Object.keys(c.services).sort()).toEqual(["deploy-agent-site", "deploy-registry"])
    expect(String(c.services["deploy-registry"]!.serviceConfig.ExecStart)).toMatch(new RegExp(`^${bin("deploy-registry")} `))
    expect(String(c.services["deploy-agent-site"]!.serviceConfig.ExecStart)).toMatch(new RegExp(`^${bin("deploy-agent")} `))
    expect(c.failedAssertions).toEqual([])
  })

  it("the VM test's machines evaluate, and the fingerprint it pins is its registry host key's", async () => {
    const { vm } = cases
    expect(vm.registry.failedAssertions).toEqual([])
    expect(vm.server.failedAssertions).toEqual([])
    expect(vm.registry.firewall).toEqual([2022])
    const { stdout } = await run("ssh-keygen", ["-lf", path.join(repoRoot, "nix/tests/keys/host_key.pub")])
    const fp = stdout.split(" ")[1]!
    expect(String(vm.server.services["deploy-agent-site"]!.serviceConfig.ExecStart)).toContain(` -fp ${fp} `)
    expect(vm.testScript).toContain(`-fp ${fp} `)
  })

  it("every Nix file parses", async () => {
    const { stdout } = await run("git", ["ls-files", "flake.nix", "nix/*.nix", "nix/**/*.nix"], { cwd: repoRoot })
    const files = stdout.split("\n").filter((f) => f !== "")
    expect(files).toEqual(expect.arrayContaining(["flake.nix", "nix/package.nix", "nix/tests/vm.nix", "nix/modules/agent.nix"]))
    for (const f of files) await run(nixInstantiate!, ["--parse", path.join(repoRoot, f)])
  })

  it.runIf(systemdAnalyze !== undefined || process.env.CI !== undefined)("the generated units pass systemd-analyze verify", async () => {
    const units: Array<[string, Unit]> = [
      ...Object.entries(cases.registry.services),
      ...Object.entries(cases.agent.services)
    ]
    const root = await makeVerifyRoot([bin("deploy-registry"), bin("deploy-agent")])
    roots.push(root)
    for (const [name, u] of units) {
      await writeFile(path.join(root, "etc/systemd/system", `${name}.service`), render(u))
      const reload = u.serviceConfig.ExecReload
      if (reload !== undefined) await addExecutable(root, String(reload).split(" ")[0]!)
    }
    const r = await verifyUnits(root, units.map(([n]) => `${n}.service`))
    expect(r.output).toBe("")
    expect(r.ok).toBe(true)
  })
})
