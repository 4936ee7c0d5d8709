// The paths of the deploy-agent's SFTP view (SftpAgentView.ts), resolved against `/` with POSIX rules
// and then matched exactly, so no spelling of a path reaches anything outside the view.
import { configurationNameProblem, sha256Problem, type Sha256 } from "../domain/Names.js"
import { normalizePath } from "../ssh/SftpProtocol.js"

export type ViewPath =
  | { readonly _tag: "Dir"; readonly dir: "/" | "/configs" | "/files" }
  | { readonly _tag: "Config" | "Signatures"; readonly name: string }
  | { readonly _tag: "Blob"; readonly hash: Sha256 }

/** What a client path names in the view, or undefined if nothing. */
export const resolveViewPath = (p: string): ViewPath | undefined => {
  const n = normalizePath(p)
  if (n === undefined) return undefined
  if (n === "/" || n === "/configs" || n === "/files") return { _tag: "Dir", dir: n }
  const config = /^\/configs\/([^/]+)\.json$/.exec(n)
  if (config && configurationNameProblem(config[1]!) === undefined) return { _tag: "Config", name: config[1]! }
  const sigs = /^\/signatures\/([^/]+)\.json$/.exec(n)
  if (sigs && configurationNameProblem(sigs[1]!) === undefined) return { _tag: "Signatures", name: sigs[1]! }
  const blob = /^\/files\/([^/]+)$/.exec(n)
  if (blob && sha256Problem(blob[1]!) === undefined) return { _tag: "Blob", hash: blob[1] as Sha256 }
  return undefined
}
