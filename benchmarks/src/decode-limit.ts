/**
 * The decode limit of a restore: every distinct non-zero chunk of some archives decoded
 * once (CRC-32, decompress, SHA-256 check) on a piscina pool with all chunks queued and
 * the blobs already in memory — no fetch, no cache, no copy. A restore of the same
 * archives is compared against it (`bench restore`, `bench live-restore`).
 */

import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Datastore } from '@liverestore/datastore';
import { esmWorkerPool } from '@liverestore/datastore/internal';
import { toHex } from '@liverestore/format';
import { ChunkCache, openSnapshot } from '@liverestore/reader';
import { Piscina } from 'piscina';
import type { DecodeLimitTask } from './decode-limit-worker.js';

/** The chunks a restore of some archives decodes, with their blobs in memory. */
export interface RestoreChunks {
  /** Distinct non-zero chunks by digest: plaintext length and the raw blob. */
  readonly tasks: ReadonlyMap<string, { readonly length: number; readonly blob: Uint8Array }>;
  /** Bytes of all non-zero chunks of the archives (a chunk used twice counts twice). */
  readonly dataBytes: number;
  /** Bytes of the distinct non-zero chunks: what the decode limit decodes. */
  readonly distinctBytes: number;
  /** Bytes of their blobs: what a restore fetches at least. */
  readonly blobBytes: number;
}

/** Reads every distinct non-zero chunk blob of `archives` of `snapshot` in the datastore `storeDir`. */
export async function collectRestoreChunks(
  storeDir: string,
  snapshot: string,
  archives: readonly string[],
): Promise<RestoreChunks> {
  const store = await Datastore.open(storeDir);
  const cache = new ChunkCache({ cacheBytes: 16 * 1024 ** 2, workers: 0 });
  const tasks = new Map<string, { length: number; blob: Uint8Array }>();
  let dataBytes = 0;
  try {
    const snap = await openSnapshot({ source: storeDir, snapshot, cache });
    try {
      for (const archive of archives) {
        const probe = await snap.openArchive(archive);
        for (let i = 0; i < probe.index.chunkCount; i++) {
          if (probe.isZeroChunk(i)) continue;
          const length = probe.index.chunkEnd(i) - probe.index.chunkStart(i);
          dataBytes += length;
          const hex = toHex(probe.index.digestAt(i));
          if (!tasks.has(hex)) tasks.set(hex, { length, blob: await readFile(store.chunkPath(hex)) });
        }
      }
    } finally {
      await snap.close();
    }
  } finally {
    await cache.close();
  }
  const distinctBytes = [...tasks.values()].reduce((sum, t) => sum + t.length, 0);
  const blobBytes = [...tasks.values()].reduce((sum, t) => sum + t.blob.byteLength, 0);
  return { tasks, dataBytes, distinctBytes, blobBytes };
}

/** A pool of `workers` threads running the decode-limit worker. */
export function decodeLimitPool(workers: number): Piscina {
  return new Piscina({
    ...esmWorkerPool(new URL('./decode-limit-worker.js', import.meta.url), 'decodeOne'),
    minThreads: workers,
    maxThreads: workers,
  });
}

/**
 * Seconds to decode every chunk of `chunks` once on `pool` (blobs copied and transferred
 * first), and the CPU seconds this process (all threads) used meanwhile.
 */
export async function timeDecodeLimit(
  pool: Piscina,
  chunks: RestoreChunks,
): Promise<{ seconds: number; cpuSeconds: number }> {
  const copies = [...chunks.tasks].map(
    ([digestHex, t]): DecodeLimitTask => ({
      digestHex,
      length: t.length,
      blob: new Uint8Array(t.blob),
    }),
  );
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    copies.map((task) => pool.run(task, { transferList: [task.blob.buffer as ArrayBuffer] })),
  );
  const seconds = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu);
  return { seconds, cpuSeconds: (used.user + used.system) / 1e6 };
}
