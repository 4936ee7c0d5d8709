import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

/**
 * The reliability tier: crash loops, fault injection (the replica kill tests among them) and soak-style waits (minutes each under
 * `npm run test:reliability`; CI runs them on a short budget after `npm test`). Everything else is the
 * default tier (`npm test`: unit and integration tests).
 */
const reliability = [
  "test/reliability/agent-crash.test.ts",
  "test/reliability/registry-crash.test.ts",
  "test/reliability/agent-faults.test.ts",
  "test/reliability/stalled-handshakes.test.ts",
  // Fault injection: the registry's disk fills up mid-upload, it dies under a connected client; a registry on
  // PostgreSQL killed mid-upload and inside addver's transaction, and the database server restarted under
  // three registries' load (kill -9, while paused, while connecting, under a row lock: ~35 s on two cores).
  "test/reliability/registry-faults.test.ts",
  "test/reliability/pg-faults.test.ts",
  // Replicas on PostgreSQL under kill -9 (of a replica mid-upload, of the leader mid-rollout, of the database):
  // crash tests of issue 20 (three replicas, a PostgreSQL and their agents: ~20-50 s each on two cores).
  "test/registry/Replicas.test.ts",
  "test/registry/ReplicasRollout.test.ts"
]

/**
 * glibc's malloc asks for transparent huge pages on the large blocks it maps (Buffers of the archive tests,
 * the programs' rings): where THP is `madvise`, as here, a 4 KiB page fault costs ~12 µs and the suite took
 * ~6 M of them. Read by glibc at each process's start, so it is set here, before vitest starts its workers,
 * which pass it on to every program a test starts. A tunable the caller set is kept.
 */
if (!/glibc\.malloc\.hugetlb=/.test(process.env["GLIBC_TUNABLES"] ?? "")) {
  process.env["GLIBC_TUNABLES"] = [process.env["GLIBC_TUNABLES"], "glibc.malloc.hugetlb=1"].filter(Boolean).join(":")
}

/**
 * Workers: four for the default tier, whose files mostly wait on their children (two left the cores idle a
 * third of the time); two for `npm run test:reliability` alone, as before: its crash loops and soaks are
 * timed against the load they make. min = max: with fewer, tinypool tears idle workers down while the last
 * files still run, and that ended a run with its unhandled "Terminating worker thread" (exit 1).
 */
const args = process.argv.join(" ")
const workers = /--project[= ]reliability\b/.test(args) && !/--project[= ]default\b/.test(args) ? 2 : 4

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: workers,
    minWorkers: workers,
    // One module graph per worker, not per file: a fresh graph (effect, ssh2, the sources) cost ~1.5 s of
    // every file's time. Tests keep no state in modules or globals that another file could see.
    isolate: false,
    // The built programs' V8 code cache (src/launch/CodeCache.ts) in this checkout, not in ~/.cache: every
    // checkout's build evicts the others' cache there, and tests that give a program a fresh HOME would
    // compile its bundle at every start.
    env: { DEPLOY_TOOLS_CACHE: path.join(path.dirname(fileURLToPath(import.meta.url)), "node_modules", ".cache", "deploy-tools") },
    // `TEST_CPU_LOG=FILE npm test`: one line of CPU seconds per test file (test/support/cpuLog.ts).
    setupFiles: process.env.TEST_CPU_LOG ? ["test/support/cpuLog.ts"] : [],
    projects: [
      { extends: true, test: { name: "default", include: ["test/**/*.test.ts"], exclude: reliability } },
      { extends: true, test: { name: "reliability", include: reliability } }
    ]
  }
})
