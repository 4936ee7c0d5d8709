// Worker thread of FileHasher.ts's checked hashes (`hashFile(file, { check })`: the registry's uploads):
// HashServer.ts hashing the bytes it reads back, and checking the same chunks as a layer
// (LayerCheckStream.ts), so that at CLOSE the verdict is known with the hash.
import { parentPort } from "node:worker_threads"
import { serveHashes } from "../fs/HashServer.js"
import { LayerCheckStream } from "./LayerCheckStream.js"

serveHashes(parentPort!, (label) => LayerCheckStream.start(label))
