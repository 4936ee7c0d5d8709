// How deploy-from-docker authenticates and checks the registry's host key — deployctl's policy,
// built from the same src/ssh pieces: -key FILE (else ssh-agent via $SSH_AUTH_SOCK); the host key
// pinned by -fp SHA256:… (else ~/.ssh/known_hosts).
import { Effect } from "effect"
import * as ClientAuth from "../ssh/ClientAuth.js"
import { fingerprint, normalizeFingerprint } from "../ssh/Fingerprint.js"
import * as KnownHosts from "../ssh/KnownHosts.js"
import { SshError } from "../ssh/SshError.js"

export const clientAuth = (key: string | undefined) =>
  Effect.map(ClientAuth.resolve({ keyFile: key, agentSocket: process.env.SSH_AUTH_SOCK }), ClientAuth.connectFields)

export interface HostKeyPolicy {
  readonly verifyHostKey: (blob: Buffer) => boolean
  readonly hostKeyRefused: (seen: string) => string
}

export const hostKeyCheck = (address: { host: string; port: number }, fp: string | undefined): Effect.Effect<HostKeyPolicy, SshError> =>
  Effect.gen(function* () {
    const where = `${address.host}:${address.port}`
    if (fp !== undefined && fp !== "") {
      const want = normalizeFingerprint(fp)
      if (want === undefined) {
        return yield* new SshError({ reason: "HostKey", message: `invalid fingerprint "${fp}": want SHA256:<43 base64 characters> as deploy-registry logs it` })
      }
      return {
        verifyHostKey: (blob: Buffer) => fingerprint(blob) === want,
        hostKeyRefused: (seen: string) => `host key mismatch for ${where}: the registry presented ${seen}, expected ${want}`
      }
    }
    const file = KnownHosts.defaultPath()
    const entries = yield* KnownHosts.load(file)
    let verdict: KnownHosts.Verdict = "unknown"
    return {
      verifyHostKey: (blob: Buffer) => (verdict = KnownHosts.check(entries, address.host, address.port, blob)) === "trusted",
      hostKeyRefused: (seen: string) =>
        verdict === "revoked"
          ? `host key ${seen} of ${where} is marked @revoked in ${file}`
          : verdict === "mismatch"
            ? `host key mismatch for ${where}: the registry presented ${seen}, which ${file} does not list`
            : `unknown host ${where} (key ${seen}): not in ${file}; pass -fp or set DEPLOYCTL_FINGERPRINT`
    }
  })
