// Reads one layer file into the Extractor: the strict single-member gzip (src/archive/Gzip.ts) in front
// of the strict tar reader (src/archive/TarParser.ts), with back-pressure from the TreeWriter. Every
// failure (read, inflate, parse, the extractor's refusal, a failed file-system call) rejects the
// returned promise with the original error: nothing in this path runs in a stream handler that could
// throw into the event loop, so no layer can take the process down.
import { createReadStream } from "node:fs"
import * as fsp from "node:fs/promises"
import { LayerUnreadable } from "../domain/ArchiveErrors.js"
import { gunzip } from "../archive/Gzip.js"
import { TarParser, type TarSink } from "../archive/TarParser.js"
import type { TreeWriter } from "./TreeWriter.js"

const reason = (e: unknown) => (e instanceof Error ? e.message : String(e))

async function* chunks(file: string, label: string, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const input = createReadStream(file, { highWaterMark: 1 << 20, ...(signal ? { signal } : {}) })
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) yield chunk as Buffer
  } catch (e) {
    throw new LayerUnreadable({ layer: label, reason: signal?.aborted ? "interrupted" : `${file}: ${reason(e)}` })
  } finally {
    input.destroy()
  }
}

/** Reads `file` into `sink`; resolves when the whole tar stream went through it and the writer has it queued. */
export const readLayer = async (file: string, label: string, sink: TarSink, w: TreeWriter, signal?: AbortSignal): Promise<void> => {
  // A layer is a verified blob in the cache: a regular file (a FIFO or a device could block us forever).
  const st = await fsp.lstat(file).catch((e: unknown) => Promise.reject(new LayerUnreadable({ layer: label, reason: `${file}: ${reason(e)}` })))
  if (!st.isFile()) throw new LayerUnreadable({ layer: label, reason: `${file}: not a regular file` })
  const parser = new TarParser(sink, label)
  await gunzip(chunks(file, label, signal), label, (chunk) => {
    parser.write(chunk)
    // The ops this chunk produced go out as one batch; the writer's first failure stops the reading.
    w.flush()
    if (w.failed !== undefined) throw w.failed
    if (w.full()) return new Promise<void>((resolve) => w.whenRoom(resolve))
    return undefined
  })
  parser.end()
}
