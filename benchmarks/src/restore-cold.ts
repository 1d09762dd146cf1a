/**
 * The cold half of `bench restore`, for one datastore (one compression): the decode limit
 * of its chunks, a cold read of every chunk through a fresh cache, a cold restore to a
 * file, the same restore the way it ran before (through the cache, restore-through-cache.ts),
 * and the restore over loopback HTTP. `bench restore` runs it for a zstd and a
 * DEFLATE store in the same rounds, so the two compare on the same machine state.
 */

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backup, Datastore } from '@liverestore/datastore';
import type { Compression } from '@liverestore/format';
import { type CachedChunkReader, ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import type { Piscina } from 'piscina';
import { collectRestoreChunks, type RestoreChunks, timeDecodeLimit } from './decode-limit.js';
import { type LiverestoreProcess, startLiverestoreProcess } from './liverestore-process.js';
import { restoreThroughCache } from './restore-through-cache.js';
import { type CaseResult, measuredCase, type PlainTable } from './result.js';
import { formatNumber, formatRate, mbPerSecond } from './units.js';

/** A datastore holding the benchmark image in one compression, and a server of it. */
export interface ColdStore {
  readonly compress: Compression;
  readonly storeDir: string;
  readonly snapshot: string;
  readonly chunks: RestoreChunks;
  readonly server: LiverestoreProcess;
  /** Samples in seconds, one per round. */
  readonly samples: {
    decode: number[];
    read: number[];
    restore: number[];
    before: number[];
    http: number[];
    elu: number[];
    beforeElu: number[];
  };
}

/** Backs up `imagePath` with `compress` into `<scratch>/store-<compress>` and starts `liverestore serve` on it. */
export async function prepareColdStore(
  scratch: string,
  imagePath: string,
  compress: Compression,
): Promise<ColdStore> {
  const storeDir = join(scratch, `store-${compress}`);
  const store = await Datastore.create(storeDir);
  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: [{ name: 'drive-scsi0', path: imagePath }],
    compress,
  });
  // The chunks a restore decodes: every distinct non-zero chunk of the image.
  const chunks = await collectRestoreChunks(storeDir, result.snapshot, ['drive-scsi0']);
  // `liverestore serve` in its own process, as a backup server would be.
  const server = await startLiverestoreProcess(['serve', '--store', storeDir, '--listen', '127.0.0.1:0']);
  return {
    compress,
    storeDir,
    snapshot: result.snapshot,
    chunks,
    server,
    samples: { decode: [], read: [], restore: [], before: [], http: [], elu: [], beforeElu: [] },
  };
}

/** Settings of the cold cases. */
export interface ColdSettings {
  readonly workers: number;
  readonly cacheBytes: number;
  readonly sizeBytes: number;
}

/** One round of the five cold cases on `cold`; appends one sample to each. `flip` swaps the two local restores. */
export async function coldRound(
  cold: ColdStore,
  s: ColdSettings,
  pool: Piscina,
  outPath: string,
  progress: (message: string) => void,
  flip = false,
): Promise<void> {
  const { storeDir, snapshot, chunks, samples } = cold;
  progress(`${cold.compress}: decode limit (${chunks.tasks.size} chunks on ${s.workers} threads) …`);
  samples.decode.push((await timeDecodeLimit(pool, chunks)).seconds);

  progress(`${cold.compress}: cold full read through the cache (no output) …`);
  {
    const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
    const snap = await openSnapshot({ source: storeDir, snapshot, cache });
    const reader = await snap.openArchive('drive-scsi0');
    const index = reader.index;
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: 2 * s.workers + 2 }, async () => {
        while (next < index.chunkCount) {
          const i = next++;
          if (reader.isZeroChunk(i)) continue;
          await reader.readAt(
            Buffer.allocUnsafe(index.chunkEnd(i) - index.chunkStart(i)),
            index.chunkStart(i),
          );
        }
      }),
    );
    samples.read.push((performance.now() - t) / 1000);
    await snap.close();
    await cache.close();
  }

  const restores = [
    async (): Promise<void> => {
      progress(`${cold.compress}: cold full restore …`);
      await timedRestore(cold, s, outPath, samples.restore, samples.elu, (reader) =>
        restoreArchive(reader, outPath, { concurrency: 2 * s.workers + 2 }),
      );
    },
    async (): Promise<void> => {
      progress(`${cold.compress}: cold full restore through the cache (before) …`);
      await timedRestore(cold, s, outPath, samples.before, samples.beforeElu, (reader) =>
        restoreThroughCache(reader, outPath, 2 * s.workers + 2),
      );
    },
  ];
  for (const run of flip ? restores.reverse() : restores) await run();

  progress(`${cold.compress}: cold full restore over loopback HTTP …`);
  {
    const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
    const snap = await openSnapshot({ source: cold.server.address, snapshot, cache });
    const reader = await snap.openArchive('drive-scsi0');
    const t = performance.now();
    await restoreArchive(reader, outPath, { concurrency: 2 * s.workers + 2 });
    samples.http.push((performance.now() - t) / 1000);
    await snap.close();
    await cache.close();
    await rm(outPath);
  }
}

/** One local restore through a fresh cache: its seconds and the main thread's event-loop utilisation. */
async function timedRestore(
  cold: ColdStore,
  s: ColdSettings,
  outPath: string,
  seconds: number[],
  elu: number[],
  restore: (reader: CachedChunkReader) => Promise<unknown>,
): Promise<void> {
  const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
  const snap = await openSnapshot({ source: cold.storeDir, snapshot: cold.snapshot, cache });
  const reader = await snap.openArchive('drive-scsi0');
  const before = performance.eventLoopUtilization();
  const t = performance.now();
  await restore(reader);
  seconds.push((performance.now() - t) / 1000);
  elu.push(performance.eventLoopUtilization(before).utilization);
  await snap.close();
  await cache.close();
  await rm(outPath);
}

const meanOf = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Names of the cold cases, for the speed-up table. */
const CASES = {
  decode: 'decode limit',
  read: 'cold full read through the cache, no output',
  restore: 'cold full restore (restoreArchive: decode threads write)',
  before: 'cold full restore through the cache (before: main thread copies and writes)',
  http: 'cold full restore over loopback HTTP (liverestore serve)',
} as const;

/** The cold cases of one store, as table rows (names prefixed by the compression). */
export function coldCases(cold: ColdStore, s: ColdSettings): CaseResult[] {
  const { samples, chunks } = cold;
  const { dataBytes, distinctBytes, tasks } = chunks;
  const decodeCase = measuredCase(
    `${cold.compress}: ${CASES.decode}, ${tasks.size} distinct chunks on ${s.workers} threads`,
    distinctBytes,
    samples.decode,
  );
  const decodeRate = decodeCase.throughputMBps!;
  const ofLimit = (xs: readonly number[]) =>
    `${formatNumber((100 * mbPerSecond(dataBytes, meanOf(xs))) / decodeRate)} %`;
  return [
    decodeCase,
    measuredCase(`${cold.compress}: ${CASES.read}`, s.sizeBytes, samples.read, {
      dataRateMBps: mbPerSecond(dataBytes, meanOf(samples.read)),
      ofDecodeLimit: ofLimit(samples.read),
      eventLoopUtilization: '',
    }),
    measuredCase(`${cold.compress}: ${CASES.restore}`, s.sizeBytes, samples.restore, {
      dataRateMBps: mbPerSecond(dataBytes, meanOf(samples.restore)),
      ofDecodeLimit: ofLimit(samples.restore),
      eventLoopUtilization: `${formatNumber(100 * meanOf(samples.elu))} %`,
    }),
    measuredCase(`${cold.compress}: ${CASES.before}`, s.sizeBytes, samples.before, {
      dataRateMBps: mbPerSecond(dataBytes, meanOf(samples.before)),
      ofDecodeLimit: ofLimit(samples.before),
      eventLoopUtilization: `${formatNumber(100 * meanOf(samples.beforeElu))} %`,
    }),
    measuredCase(`${cold.compress}: ${CASES.http}`, s.sizeBytes, samples.http, {
      dataRateMBps: mbPerSecond(dataBytes, meanOf(samples.http)),
      ofDecodeLimit: ofLimit(samples.http),
      eventLoopUtilization: '',
      vsLocal: `${(meanOf(samples.restore) / meanOf(samples.http)).toFixed(2)}`,
    }),
  ];
}

/** Each store's rates over the `baseline` store's, case by case (same run). */
export function coldSpeedups(stores: readonly ColdStore[], baseline: Compression): PlainTable | undefined {
  const base = stores.find((c) => c.compress === baseline);
  if (base === undefined) return undefined;
  const rows: string[][] = [];
  for (const cold of stores) {
    if (cold === base) continue;
    for (const key of ['decode', 'read', 'restore', 'before', 'http'] as const) {
      // Both stores hold the same plaintext; the decode limit counts distinct chunks once.
      const bytes = (c: ColdStore) => (key === 'decode' ? c.chunks.distinctBytes : c.chunks.dataBytes);
      const ours = mbPerSecond(bytes(cold), meanOf(cold.samples[key]));
      const theirs = mbPerSecond(bytes(base), meanOf(base.samples[key]));
      rows.push([
        CASES[key],
        `${cold.compress} ${formatRate(ours)}`,
        `${baseline} ${formatRate(theirs)}`,
        `${formatNumber(ours / theirs)}×`,
      ]);
    }
    // The goal of issue 13: today's restore of this store over the baseline store restored as before.
    const ours = mbPerSecond(cold.chunks.dataBytes, meanOf(cold.samples.restore));
    const before = mbPerSecond(base.chunks.dataBytes, meanOf(base.samples.before));
    rows.push([
      `${CASES.restore} vs the ${baseline} store restored through the cache (before)`,
      `${cold.compress} ${formatRate(ours)}`,
      `${baseline} ${formatRate(before)}`,
      `${formatNumber(ours / before)}×`,
    ]);
  }
  return {
    title: `Speed-up over the ${baseline} store (non-zero bytes per second, same run)`,
    columns: ['case', 'store', 'baseline', 'speed-up'],
    rows,
  };
}
