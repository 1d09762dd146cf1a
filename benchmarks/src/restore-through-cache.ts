/**
 * The baseline of `bench restore`: how `restoreArchive` restored before the decode
 * threads wrote the image themselves (commit e7c03a9 and earlier), kept here (not in the
 * product) so that both compare in the same run. Each chunk is read through the cache
 * (`readAt`: fetch, decode into a slot of the shared arena, copy out on the main thread),
 * then its non-zero 64 KiB blocks are written from the main thread (libuv's threads do the
 * pwrite), writeback started every 256 MiB, fsync and rename at the end. A duplicate chunk
 * is read again (a cache hit when it is still there).
 */

import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type CachedChunkReader, Writeback } from '@liverestore/reader';
import { dataExtents } from '@liverestore/reader/internal';

/** Restores `reader`'s image to `path` (a new regular file) the way main did before; the bytes written. */
export async function restoreThroughCache(
  reader: CachedChunkReader,
  path: string,
  concurrency: number,
): Promise<number> {
  const temp = `${path}.partial`;
  const handle = await open(temp, 'wx', 0o644);
  const writeback = new Writeback(handle);
  const index = reader.index;
  let bytesWritten = 0;
  try {
    await handle.truncate(reader.size);
    let next = 0;
    const lane = async (): Promise<void> => {
      let own = Buffer.alloc(0);
      while (next < index.chunkCount) {
        const i = next++;
        if (reader.isZeroChunk(i)) continue;
        const start = index.chunkStart(i);
        const length = index.chunkEnd(i) - start;
        if (own.length < length) own = Buffer.allocUnsafe(length);
        const buffer = own.subarray(0, length);
        await reader.readAt(buffer, start);
        for (const [from, to] of dataExtents(buffer)) {
          for (let at = from; at < to; ) {
            const { bytesWritten: n } = await handle.write(buffer, at, to - at, start + at);
            at += n;
          }
          bytesWritten += to - from;
        }
        writeback.written(bytesWritten);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    await writeback.sync();
  } catch (err) {
    await writeback.settle();
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, path);
  const dir = await open(dirname(path), 'r');
  await dir.sync().finally(() => dir.close());
  return bytesWritten;
}
