// Reads one layer file into the Extractor through the one layer reader (src/archive/LayerCheck.ts: strict
// single-member gzip in front of the strict tar parser), with back-pressure from the TreeWriter. Every
// failure rejects the returned promise: the extractor's refusal and a failed file-system call as they
// are, read, inflate and parse failures typed by the reader. Nothing in this path runs in a stream
// handler that could throw into the event loop, so no layer can take the process down.
import * as fsp from "node:fs/promises"
import { readLayer as readLayerFile } from "../archive/LayerCheck.js"
import type { TarSink } from "../archive/TarParser.js"
import { LayerUnreadable } from "../domain/ArchiveErrors.js"
import type { TreeWriter } from "./TreeWriter.js"

const reason = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** Reads `file` into `sink`; resolves when the whole tar stream went through it and the writer has it queued. */
export const readLayer = async (file: string, label: string, sink: TarSink, w: TreeWriter, signal?: AbortSignal): Promise<void> => {
  // A layer is a verified blob in the cache: a regular file (a FIFO or a device could block us forever).
  const st = await fsp.lstat(file).catch((e: unknown) => Promise.reject(new LayerUnreadable({ layer: label, reason: `${file}: ${reason(e)}` })))
  if (!st.isFile()) throw new LayerUnreadable({ layer: label, reason: `${file}: not a regular file` })
  await readLayerFile(file, label, sink, {
    ...(signal ? { signal } : {}),
    // Inflated on this thread into one reused buffer: the sink's data goes into the writer's batch, which
    // room's flush copies into the writer's ring before the next chunk is inflated.
    inline: true,
    room: () => {
      // The ops this chunk produced go out as one batch; the writer's first failure stops the reading.
      w.flush()
      if (w.failed !== undefined) throw w.failed
      return w.full() ? new Promise<void>((resolve) => w.whenRoom(resolve)) : undefined
    }
  })
}
