// Test keys made the way operators make them: `ssh-keygen -t ed25519 -N ''`.
import { execFile } from "node:child_process"
import { mkdtemp, readFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

export interface KeyPair {
  privatePath: string
  publicPath: string
  /** "ssh-ed25519 AAAA... comment" */
  publicLine: string
  /** SHA256:... as `ssh-keygen -lf` prints it */
  fingerprint: string
}

/** Generates `<dir>/<name>` and `<dir>/<name>.pub` (ed25519, no passphrase). */
export const makeKey = async (dir: string, name: string, comment = `${name}@test`): Promise<KeyPair> => {
  const privatePath = path.join(dir, name)
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", privatePath])
  return loadKey(privatePath)
}

/** Reads an existing key pair made by makeKey. */
export const loadKey = async (privatePath: string): Promise<KeyPair> => {
  const publicPath = `${privatePath}.pub`
  const publicLine = (await readFile(publicPath, "utf8")).trim()
  const fingerprint = await keygenFingerprint(publicPath)
  return { privatePath, publicPath, publicLine, fingerprint }
}

/** The `SHA256:...` field of `ssh-keygen -lf FILE` (FILE may be a public or a private key). */
export const keygenFingerprint = async (file: string): Promise<string> => {
  const { stdout } = await run("ssh-keygen", ["-lf", file])
  const fp = stdout.split(/\s+/)[1]
  if (fp === undefined || !fp.startsWith("SHA256:")) throw new Error(`unexpected ssh-keygen -lf output: ${stdout}`)
  return fp
}

/** mkdtemp under os.tmpdir(); the caller removes it. */
export const tempDir = (prefix: string): Promise<string> => mkdtemp(path.join(os.tmpdir(), prefix))
