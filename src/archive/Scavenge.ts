// Young-generation GCs for the check's worker thread. The inflated tar stream comes out of zlib in
// a new 256 KiB buffer per chunk (node:zlib allocates them; there is no public way to hand it ours),
// and V8 only scavenges dead young ArrayBuffers once they add up to 2 × its default semi-space (32 MiB
// on 64-bit) or the JS heap fills; so a GiB layer kept up to ~35 MiB of dead buffers resident.
// A minor GC of the worker's small heap every few MiB keeps that down to the few MiB between two
// (measured: bench/checkrss.mjs, docs/bench.md). Only for worker threads: it exposes `gc` process-wide.
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

/** Inflated chunks (≤ 256 KiB each) between two scavenges. */
const EVERY = 16

/** A `room` hook (ReadOptions) that scavenges this isolate every EVERY chunks; a no-op when gc cannot be had. */
export const scavenger = (): (() => undefined) => {
  let gc: ((o: { type: "minor" }) => void) | undefined
  try {
    setFlagsFromString("--expose-gc")
    gc = runInNewContext("gc") as typeof gc
    // Back off: the flag is part of V8's flag hash, and a code cache made under other flags is rejected
    // (src/launch/CodeCache.ts), so with it left on, every later worker and the program's exit-time save
    // would compile and cache anew. The `gc` function taken above keeps working.
    setFlagsFromString("--no-expose-gc")
  } catch {
    gc = undefined
  }
  let n = 0
  return () => {
    if (gc !== undefined && ++n % EVERY === 0) gc({ type: "minor" })
    return undefined
  }
}
