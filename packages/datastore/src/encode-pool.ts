import { availableParallelism } from 'node:os';
import { type Compression, type CryptConfig, encodeBlob } from '@liverestore/format';
import { Piscina } from 'piscina';
import type { EncodeTask } from './encode-worker.js';
import { esmWorkerPool } from './esm-worker-pool.js';

/** Compresses and encrypts chunks; `close()` when done. */
export interface ChunkEncoder {
  /** Encodes `data`; the encoder may take ownership of its memory (do not reuse it). */
  encode(data: Buffer): Promise<Buffer>;
  /** How many chunks can usefully be encoding at once. */
  readonly parallelism: number;
  close(): Promise<void>;
}

/**
 * Chunks are compressed on a worker pool while the main thread reads, hashes and
 * deduplicates: zstd level 1 (the default) runs at 0.5–2 GB/s per core, about SHA-256's
 * speed, and `--compress deflate` at only 30–110 MB/s, so inline encoding would halve a
 * backup at best. `threads: 0` encodes inline (for tiny inputs and for environments
 * without worker threads).
 */
export function createChunkEncoder(options: {
  compress: Compression;
  crypt: CryptConfig | undefined;
  threads?: number;
}): ChunkEncoder {
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 0)
    throw new RangeError('threads must be a non-negative integer');
  if (threads === 0) {
    return {
      parallelism: 1,
      encode: async (data) => encodeBlob(data, { compress: options.compress, crypt: options.crypt }),
      close: async () => undefined,
    };
  }
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./encode-worker.js', import.meta.url), 'encode'),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 1000,
  });
  const key = options.crypt?.exportKey();
  return {
    parallelism: threads,
    async encode(data) {
      // Transfer the memory when the chunk owns its whole ArrayBuffer; a view into a shared
      // one (Buffer pool, stream buffer) must be copied, or the sharer would be detached.
      const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
      const chunk = owned ? data : new Uint8Array(data);
      const task: EncodeTask = {
        data: chunk,
        compress: options.compress,
        ...(key === undefined ? {} : { key }),
      };
      const blob = (await pool.run(task, { transferList: [chunk.buffer as ArrayBuffer] })) as Uint8Array;
      return Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    },
    close: () => pool.destroy(),
  };
}
