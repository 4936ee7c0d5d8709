// One entry of a layer, as the strict reader (TarParser.ts) yields it: every field already resolved
// from the ustar header, a PAX extended header and GNU long names, with ambiguity refused.

export type EntryKind = "file" | "dir" | "symlink" | "hardlink" | "chardev" | "blockdev" | "fifo"

export interface TarEntry {
  /** The one name: PAX `path`, else GNU `L`, else ustar prefix/name (as in the archive, not normalised). */
  readonly path: string
  /** GNU sparse (`S`) and every type not listed here are refused by the reader, never guessed. */
  readonly kind: EntryKind
  /** The 0o7777 bits. */
  readonly mode: number
  readonly uid: number
  readonly gid: number
  readonly uname: string
  readonly gname: string
  /** Seconds since the epoch; may be negative or fractional (PAX mtime). */
  readonly mtime: number
  /** PAX atime, when the archive carries one. */
  readonly atime: number | undefined
  /** Content bytes that follow (files only; 0 otherwise). */
  readonly size: number
  /** Symlink/hardlink target, "" otherwise. */
  readonly linkpath: string
}
