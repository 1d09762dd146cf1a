import { once } from 'node:events';
import { LiverestoreError } from '@liverestore/format';
import type { CachedChunkReader } from '@liverestore/reader';

/** Pieces read from the archive and written to the stream: one chunk at a time. */
const PIECE_BYTES = 4 * 1024 * 1024;

/**
 * `restore --out -`: writes an archive's bytes in order to a stream (stdout, a pipe), as
 * `proxmox-backup-client restore … -` does. A pipe cannot have holes, so zero chunks are
 * written as zeros; the reader's readahead keeps the next chunks decoding while the
 * consumer takes this one, and the stream's backpressure is honoured. A consumer that
 * goes away (`| head`) is an output error naming how far the archive got.
 */
export async function writeArchiveTo(
  reader: CachedChunkReader,
  out: NodeJS.WritableStream,
  onProgress: (bytesDone: number) => void,
): Promise<number> {
  let done = 0;
  let failure: Error | undefined;
  const onError = (err: Error) => {
    failure ??= err;
  };
  out.on('error', onError);
  const source = reader.createReadStream({ highWaterMark: PIECE_BYTES });
  try {
    for await (const piece of source as AsyncIterable<Buffer>) {
      if (failure !== undefined) break;
      const accepted = out.write(piece);
      done += piece.byteLength;
      onProgress(done);
      if (!accepted && failure === undefined) await Promise.race([once(out, 'drain'), once(out, 'error')]);
    }
  } catch (err) {
    // once(out, 'error') rejects with the stream's error; a read error is the reader's.
    if (failure === undefined) throw err;
  } finally {
    source.destroy();
    out.off('error', onError);
  }
  if (failure !== undefined) {
    const code = (failure as { code?: string }).code ?? 'error';
    throw new LiverestoreError(
      'ERR_LR_OUTPUT_INVALID',
      `the output stream closed after ${done} of ${reader.size} bytes of ${reader.name} (${code})`,
      { cause: failure },
    );
  }
  return done;
}
