// A long-running program says when its start-up is done (the registry once it listens). The launcher
// (src/launch/CodeCache.ts runBundle) then saves the code cache, if this start made none: a process that
// is later killed runs no exit handler and so never saved one (every later start compiled the whole
// bundle again, ~150 ms of the registry's), and one that runs long may have had V8 drop the bytecode of
// the functions that ran only at start, which the next start would then compile again.
// The launcher and the bundle are separate module graphs, so the hook is a process-wide symbol (CodeCache.ts
// spells the same key).
export const STARTED_UP: unique symbol = Symbol.for("deploy-tools/started-up")

/** Tells the launcher that start-up is done; nothing when not started by one (tests, tsx). */
export const startedUp = (): void => {
  const hook = (globalThis as { [STARTED_UP]?: unknown })[STARTED_UP]
  if (typeof hook === "function") hook()
}
