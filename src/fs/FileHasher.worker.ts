// Worker thread of FileHasher.ts: hashes only (HashServer.ts), with nothing else loaded, so that its
// start stays cheap (every download larger than INLINE_MAX starts it).
import { parentPort } from "node:worker_threads"
import { serveHashes } from "./HashServer.js"

serveHashes(parentPort!)
