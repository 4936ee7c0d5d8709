import { createHash } from "node:crypto"
import type { Sha256 } from "./Names.js"

/** sha256 over `<layer sha256>\n` per layer, in order: the identity of a configuration's file tree. */
export const configHash = (layerHashes: ReadonlyArray<string>): Sha256 => {
  const h = createHash("sha256")
  for (const l of layerHashes) h.update(`${l}\n`)
  return h.digest("hex") as Sha256
}
