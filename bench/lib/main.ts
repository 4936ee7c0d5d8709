// Shared entry for every benchmark: run alone (`node --import tsx bench/x.ts [flags]`) or from run.ts.
import { pathToFileURL } from "node:url"
import { UsageError } from "./flags.js"
import { formatTable, writeResult, type BenchResult } from "./report.js"

export type Bench = (argv: ReadonlyArray<string>) => Promise<BenchResult>

export const log = (msg: string): void => {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

export const isMain = (metaUrl: string): boolean =>
  process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === metaUrl

/** Prints the table and writes bench/results/<name>.json. */
export const publish = async (res: BenchResult): Promise<void> => {
  const file = await writeResult(res)
  process.stdout.write(`\n== ${res.name} ==\n${formatTable(res.rows)}\n(results: ${file})\n`)
}

/**
 * Runs `cli` with the command line when `metaUrl` is the program's entry point: exit 0 when it succeeds,
 * else its message on stderr and exit 2 for a usage error, 1 for anything else.
 */
export const runCli = (metaUrl: string, cli: (argv: ReadonlyArray<string>) => Promise<void>): void => {
  if (!isMain(metaUrl)) return
  cli(process.argv.slice(2))
    .then(() => process.exit(0))
    .catch((e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
      process.exit(e instanceof UsageError ? 2 : 1)
    })
}

export const runStandalone = (metaUrl: string, bench: Bench): void => runCli(metaUrl, (argv) => bench(argv).then(publish))

/** Runs cleanups in reverse order even when the benchmark failed. */
export class Cleanup {
  private readonly fns: Array<() => Promise<unknown>> = []
  add(fn: () => Promise<unknown>): void {
    this.fns.push(fn)
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) {
      try {
        await fn()
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`)
      }
    }
  }
}
