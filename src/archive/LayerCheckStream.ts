// The layer check pushed one chunk at a time, synchronously, on whatever thread reads the bytes: the
// registry's upload hasher (CheckedHasher.worker.ts) reads back each upload as it is written to hash it,
// and checks the same chunks on the way, so that addver finds the verdict and reads nothing again.
// The same reader as every other door (InlineGunzip in front of TarParser), without Effect or the file
// reading of LayerCheck.ts: the hashing worker it runs in stays small.
import { LayerRefused, LayerUnreadable } from "../domain/ArchiveErrors.js"
import { InlineGunzip, inlineInflateAvailable } from "./GzipInline.js"
import type { WorkerReply } from "./LayerCheck.js"
import { TarParser } from "./TarParser.js"

/** Any failure as a reply: a refusal stays one, everything else is "cannot read" (asLayerFailure's rule). */
export const failureReply = (e: unknown): WorkerReply =>
  e instanceof LayerRefused
    ? { refused: { layer: e.layer, entry: e.entry, reason: e.reason } }
    : { unreadable: e instanceof LayerUnreadable ? e.reason : e instanceof Error ? e.message : String(e) }

const ignore = { entry: () => {}, data: () => {}, entryEnd: () => {} }

export class LayerCheckStream {
  private readonly gz: InlineGunzip
  private readonly parser: TarParser
  private failed: WorkerReply | undefined
  private closed = false

  /** Undefined where this Node's zlib cannot inflate inline (GzipInline.ts): check the file later then. */
  static start(label: string): LayerCheckStream | undefined {
    return inlineInflateAvailable ? new LayerCheckStream(label) : undefined
  }

  private constructor(label: string) {
    this.gz = new InlineGunzip(label)
    this.parser = new TarParser(ignore, label)
  }

  /** The next bytes of the file (read only during the call). After a refusal, nothing more is read. */
  write(chunk: Buffer): void {
    if (this.failed !== undefined || this.closed) return
    try {
      for (const out of this.gz.write(chunk)) this.parser.write(out)
    } catch (e) {
      this.fail(e)
    }
  }

  /** The end of the file: the verdict (no hash: the caller has it). */
  end(): WorkerReply {
    if (this.failed === undefined && !this.closed) {
      try {
        const outs = this.gz.end()
        for (let next = outs.next(); ; next = outs.next()) {
          if (next.done === true) {
            this.parser.end()
            this.close()
            return { ok: { entries: this.parser.entries, bytes: next.value.compressed, hash: undefined } }
          }
          this.parser.write(next.value)
        }
      } catch (e) {
        this.fail(e)
      }
    }
    return this.failed ?? { unreadable: "the check was closed" }
  }

  /** Frees the inflater (after a verdict, or for a file abandoned). */
  close(): void {
    if (!this.closed) this.gz.close()
    this.closed = true
  }

  private fail(e: unknown): void {
    this.failed = failureReply(e)
    this.close()
  }
}
