// deployctl's signing of configuration states (`deployctl sign`, and `-sign` on the commands that make
// a state): read the hash to sign (the current one, -hash H, or the target of the rollout just started),
// build the canonical text (SignedState.ts), sign it with -key or the ssh-agent key (Signer.ts), or take
// a signature made elsewhere (`ssh-keygen -Y sign -n deploy-tools` over the text -print-message printed),
// and attach it with the registry's `addsig` (which takes the current state or a live rollout's target).
import { Effect } from "effect"
import { promises as fs } from "node:fs"
import type { Client } from "ssh2"
import { type ConfigurationName, sha256Problem } from "../domain/Names.js"
import { parseSignedMessage, SignedState, signingTime } from "../domain/SignedState.js"
import { exec } from "../ssh/Exec.js"
import { sign, type SigningKey } from "../ssh/Signer.js"
import type { SshError } from "../ssh/SshError.js"
import { FileError } from "./ArchiveCheck.js"

export interface SignArgs {
  readonly name: string
  /** The state to sign: its hash (-hash), the live rollout's target (`rollout -sign`), else the current one. */
  readonly hash?: string
  readonly rolloutTarget?: boolean
  /** Print the text to sign and attach nothing. */
  readonly printMessage?: boolean
  /** A signature made elsewhere; its message is `messageFile`, else this file without `.sig`. */
  readonly signatureFile?: string
  readonly messageFile?: string
}

/** A problem found by deployctl (exit status 2 when it is the command line's). */
export type SignProblem = { readonly usage: string } | { readonly failed: string }

const readText = (file: string) =>
  Effect.tryPromise({ try: () => fs.readFile(file, "utf8"), catch: (cause) => new FileError({ file, reason: (cause as NodeJS.ErrnoException).code ?? String(cause), cause }) })

type HashAnswer = { readonly hash: string; readonly failed?: undefined } | { readonly failed: string }

/** A hash read from a registry command's `-json` answer by `pick` (the registry's own error passes through). */
const hashFrom = (client: Client, argv: ReadonlyArray<string>, payload: (argv: ReadonlyArray<string>) => string, pick: (doc: Record<string, unknown>) => HashAnswer): Effect.Effect<HashAnswer, SshError> =>
  Effect.map(exec(client, payload(argv)), (r) => {
    const out = Buffer.from(r.stdout).toString("utf8")
    const what = argv.filter((a) => !a.startsWith("-name=")).join(" ")
    if (r.code !== 0) return { failed: out.trim() || `${what} failed (${r.code})` } as const
    try {
      return pick(JSON.parse(out) as Record<string, unknown>)
    } catch {
      return { failed: `${what} did not print JSON` } as const
    }
  })

/** The configuration's current hash, from `showconf -json`. */
export const currentHash = (client: Client, name: string, payload: (argv: ReadonlyArray<string>) => string) =>
  hashFrom(client, ["showconf", `-name=${name}`, "-json"], payload, (d) =>
    typeof d.Hash === "string" ? { hash: d.Hash } : { failed: "showconf -json has no Hash" })

/** The target of the configuration's live rollout, from `rollout -status -json`. */
export const rolloutTarget = (client: Client, name: string, payload: (argv: ReadonlyArray<string>) => string) =>
  hashFrom(client, ["rollout", `-name=${name}`, "-status", "-json"], payload, (d) =>
    d.Phase !== "running" && d.Phase !== "paused" && d.Phase !== "halted" ? { failed: `the rollout of "${name}" is ${String(d.Phase)}; nothing to sign` }
      : typeof d.To === "string" ? { hash: d.To } : { failed: "rollout -status -json has no To" })

/** What to attach: the state signed and the armored signature; or the message alone (-print-message). */
export const prepare = (
  client: Client,
  args: SignArgs,
  key: SigningKey | undefined,
  payload: (argv: ReadonlyArray<string>) => string
): Effect.Effect<{ readonly print: string } | { readonly state: SignedState; readonly signature: string } | SignProblem, SshError | FileError> =>
  Effect.gen(function* () {
    if (args.signatureFile !== undefined) {
      const signature = yield* readText(args.signatureFile)
      const messageFile = args.messageFile ?? args.signatureFile.replace(/\.sig$/, "")
      if (messageFile === args.signatureFile) return { usage: "-signature FILE needs -message FILE (the text -print-message printed)" }
      const state = parseSignedMessage(yield* readText(messageFile))
      if (typeof state === "string") return { usage: `${messageFile}: ${state}` }
      if (state.name !== args.name) return { usage: `${messageFile} is for configuration "${state.name}", not "${args.name}"` }
      return { state, signature }
    }
    const cur = args.hash !== undefined ? { hash: args.hash.toLowerCase() }
      : yield* (args.rolloutTarget === true ? rolloutTarget : currentHash)(client, args.name as ConfigurationName, payload)
    if (cur.failed !== undefined) return { failed: cur.failed }
    if (sha256Problem(cur.hash) !== undefined) return { usage: `-hash: ${sha256Problem(cur.hash)}` }
    const state = new SignedState({ name: args.name, hash: cur.hash, time: signingTime() })
    if (args.printMessage) return { print: state.message }
    if (key === undefined) return { usage: "no key to sign with: pass -key FILE or start ssh-agent and ssh-add a key" }
    return { state, signature: yield* sign(key, Buffer.from(state.message)) }
  })
