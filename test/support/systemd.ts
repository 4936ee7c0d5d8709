// `systemd-analyze verify` against a scratch root: the host's stock units (for the targets a unit
// names) plus the units under test in /etc/systemd/system and stand-in executables at the paths
// their Exec lines use, so verify checks those paths for real without installing anything.
import { execFile } from "node:child_process"
import { existsSync } from "node:fs"
import { chmod, cp, mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

export const systemdAnalyze: string | undefined = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p))

/** A root with the stock units, /bin -> usr/bin, and an executable stub at each of `executables`. */
export const makeVerifyRoot = async (executables: ReadonlyArray<string>): Promise<string> => {
  const root = await mkdtemp(path.join(os.tmpdir(), "systemd-root-"))
  await mkdir(path.join(root, "usr/lib/systemd"), { recursive: true })
  await cp("/usr/lib/systemd/system", path.join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true })
  await mkdir(path.join(root, "usr/bin"), { recursive: true })
  await symlink("usr/bin", path.join(root, "bin"))
  await mkdir(path.join(root, "etc/systemd/system"), { recursive: true })
  for (const exe of executables) await addExecutable(root, exe)
  return root
}

export const addExecutable = async (root: string, exe: string): Promise<void> => {
  const at = path.join(root, exe)
  await mkdir(path.dirname(at), { recursive: true })
  await writeFile(at, "#!/bin/sh\nexit 0\n")
  await chmod(at, 0o755)
}

/** Runs verify on units already in <root>/etc/systemd/system; every line it prints is a finding. */
export const verifyUnits = async (root: string, units: ReadonlyArray<string>): Promise<{ ok: boolean; output: string }> => {
  try {
    const { stdout, stderr } = await run(systemdAnalyze!, ["verify", "--man=no", `--root=${root}`, ...units])
    const output = (stdout + stderr).trim()
    return { ok: output === "", output }
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string }
    return { ok: false, output: ((err.stdout ?? "") + (err.stderr ?? "")).trim() || err.message }
  }
}
