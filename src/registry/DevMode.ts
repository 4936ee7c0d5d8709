// `deploy-registry -dev` (npm run registry): a registry that needs no setup. When the keys files are
// missing it generates an operator and an agent key pair next to them and trusts exactly those; every
// key it trusts is printed, never trusted silently. After start it prints ready-to-paste commands.
import { Effect } from "effect"
import { promises as fs } from "node:fs"
import * as path from "node:path"
import { StartupError } from "../domain/StartupError.js"
import { writeFileAtomic } from "../fs/Atomic.js"
import { parseAuthorizedKeys } from "../ssh/AuthorizedKeys.js"
import { generateEd25519 } from "../ssh/KeyGen.js"

const exists = (p: string) => fs.access(p).then(() => true, () => false)

/** Shown relative to the current directory when inside it, as the user will paste it. */
export const display = (p: string) => {
  const rel = path.relative(process.cwd(), path.resolve(p))
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : path.resolve(p)
}

/** Creates `<keysDir>/<name>` and `.pub` (ed25519, OpenSSH format, 0600) and returns the public line. */
const generatePair = async (keysDir: string, name: string, comment: string): Promise<string> => {
  const pair = generateEd25519(comment)
  await writeFileAtomic(path.join(keysDir, name), pair.private, { mode: 0o600 })
  await writeFileAtomic(path.join(keysDir, `${name}.pub`), pair.public + "\n", { mode: 0o644 })
  return pair.public
}

export interface DevKeys {
  readonly operatorKey: string
  readonly agentKey: string
}

/** Ensures both keys files exist (generating pairs as needed) and prints every key they trust. */
export const prepareDevKeys = (files: { readonly dir: string; readonly opauth: string; readonly srvauth: string }) =>
  Effect.tryPromise({
    try: async (): Promise<{ readonly lines: ReadonlyArray<string>; readonly keys: DevKeys }> => {
      const lines: Array<string> = []
      const keys = { operatorKey: path.join(files.dir, "operator_key"), agentKey: path.join(files.dir, "agent_key") }
      for (const [file, name, label] of [
        [files.opauth, "operator_key", "operator"],
        [files.srvauth, "agent_key", "agent"]
      ] as const) {
        if (!(await exists(file))) {
          const keyPath = path.join(files.dir, name)
          const pub = (await exists(keyPath)) && (await exists(`${keyPath}.pub`))
            ? (await fs.readFile(`${keyPath}.pub`, "utf8")).trim()
            : await generatePair(files.dir, name, `deploy-registry dev ${label}`)
          await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
          await writeFileAtomic(file, pub + "\n", { mode: 0o644 })
        }
        for (const k of parseAuthorizedKeys(await fs.readFile(file, "utf8")).keys) {
          lines.push(`trusting ${label} key ${k.fingerprint}${k.comment ? ` ${k.comment}` : ""} (${display(file)})`)
        }
      }
      return { lines, keys }
    },
    catch: (e) => new StartupError({ message: `dev mode: cannot prepare keys in ${files.dir}: ${(e as Error).message}` })
  })

/** The commands printed once a dev registry listens. */
export const devHints = (o: { readonly host: string; readonly port: number; readonly fingerprint: string; readonly keys: DevKeys }): string => {
  const host = o.host === "" ? "localhost" : o.host
  const hostPort = host.includes(":") ? `[${host}]:${o.port}` : `${host}:${o.port}`
  const op = display(o.keys.operatorKey)
  const agent = display(o.keys.agentKey)
  return [
    "",
    "dev registry ready; try:",
    `  sftp -P ${o.port} -i ${op} ${host}`,
    `  ssh -p ${o.port} -i ${op} ${host} help`,
    `  export DEPLOYCTL_ADDR=${hostPort} DEPLOYCTL_FINGERPRINT=${o.fingerprint}`,
    `  deployctl -key ${op} components`,
    `  deploy-agent -addr ${hostPort} -fp ${o.fingerprint} -key ${agent} -name project1 -dir ./agent -script ./deploy.sh`,
    ""
  ].join("\n")
}

