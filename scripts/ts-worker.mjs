// Runs a `*.worker.ts` module under the TypeScript sources (vitest, `node --import tsx`): a worker thread
// does not inherit its parent's module hooks on Node 20, so register tsx here, then load the module
// named by the first extra argument (see src/fs/WorkerModule.ts). Never used by the built programs.
import { register } from "tsx/esm/api"

register()
await import(process.argv[2])
