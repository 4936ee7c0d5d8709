// Types for the ssh2 files Ssh2Internals.ts imports directly (ssh2's own types cover only its public API).
// Static imports, not a run-time require, so esbuild bundles these files with the rest of ssh2: one copy.
declare module "ssh2/lib/protocol/utils.js" {
  const utils: { readonly sendPacket: unknown }
  export = utils
}
declare module "ssh2/lib/protocol/Protocol.js" {
  const Protocol: { readonly prototype: Record<string, unknown> }
  export = Protocol
}
declare module "ssh2/lib/protocol/SFTP.js" {
  const sftp: { readonly SFTP: unknown }
  export = sftp
}
