// The built deploy-agent as a child process, and a deploy script that checks the tree it is given.
import type { ChildProcess } from "node:child_process"
import { chmodSync, mkdirSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { type RunningAgent, spawnAgent } from "../../support/agent.js"
import type { TestRegistry } from "../../support/registry.js"

export type { RunningAgent }

const live = new Set<ChildProcess>()
process.once("exit", () => {
  for (const c of live) c.kill("SIGKILL")
})

export interface AgentOptions {
  readonly dir: string
  readonly name: string
  readonly script: string
  readonly poll?: string
  readonly once?: boolean
  readonly extra?: ReadonlyArray<string>
}

export const startAgent = (reg: TestRegistry, o: AgentOptions, port = reg.port): RunningAgent => {
  const args = ["-addr", `127.0.0.1:${port}`, "-name", o.name, "-key", reg.agent.privatePath, "-fp", reg.fingerprint,
    "-dir", o.dir, "-script", o.script, "-state", path.join(o.dir, "state.json"), "-poll", o.poll ?? "1s", "-v",
    ...(o.once ? ["-once"] : []), ...(o.extra ?? [])]
  const agent = spawnAgent(args, o.dir)
  live.add(agent.child)
  void agent.exited.then(() => live.delete(agent.child))
  return agent
}

export const kill = async (a: RunningAgent, signal: NodeJS.Signals = "SIGKILL") => {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill(signal)
  return a.exited
}

/**
 * A deploy script that checks $NEWROOT against `<manifests>/$NEWID` (sha256sum format: content of every
 * file, and no other file), checks $STATEFILE names $NEWID, appends any violation to `violations` and
 * every good deploy to `deploys`. It then lingers a little so that kills can land while it runs.
 */
export const writeCheckingScript = (dir: string, manifests: string, violations: string, deploys: string): string => {
  mkdirSync(dir, { recursive: true })
  const script = path.join(dir, "deploy.sh")
  writeFileSync(
    script,
    `#!/bin/sh
M="${manifests}/$NEWID"
V="${violations}"
bad() { echo "$NEWID: $*" >> "$V"; exit 1; }
[ -n "$NEWID" ] || bad "NEWID empty"
[ -f "$M" ] || bad "no manifest for this NEWID"
cd "$NEWROOT" || bad "cannot enter NEWROOT=$NEWROOT"
out=$(sha256sum --quiet --strict -c "$M" 2>&1) || bad "content differs: $(echo "$out" | head -3 | tr '\\n' ' ')"
want=$(cut -c 67- "$M" | LC_ALL=C sort)
have=$(find . -type f -printf '%P\\n' | LC_ALL=C sort)
[ "$want" = "$have" ] || bad "file list differs: $(printf '%s\\n' "$have" | head -c 300 | tr '\\n' ' ')"
grep -q "$NEWID" "$STATEFILE" || bad "STATEFILE does not name NEWID"
echo "$NEWID" >> "${deploys}"
sleep 0.$(( $$ % 3 ))
exit 0
`
  )
  chmodSync(script, 0o755)
  return script
}
