/**
 * `pnpm bench restore`: the read path. A cold full restore of a synthetic VM disk from a
 * local datastore, next to the pure decode rate of the same chunks on a pool of the same
 * size in the same run (the ceiling the restore can reach), for a zstd store (the
 * default) and a DEFLATE store in the same rounds; and warm random 4 KiB read latency
 * through the cache at queue depth 1 and 16.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Compression, zstdCodecInfo } from '@liverestore/format';
import { ChunkCache, openSnapshot } from '@liverestore/reader';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { decodeLimitPool } from './decode-limit.js';
import { UsageError } from './errors.js';
import { machineInfo } from './machine.js';
import {
  CACHE_SIZE_OPTION,
  DECODE_WORKERS_OPTION,
  optionText,
  SCRATCH_DIR_OPTION,
  VM_SEED_OPTION,
} from './options.js';
import { type ColdStore, coldCases, coldRound, coldSpeedups, prepareColdStore } from './restore-cold.js';
import {
  type BenchResult,
  type CaseResult,
  type DetailColumn,
  measuredCase,
  type PlainTable,
} from './result.js';
import { formatBytes, formatNumber, parseBytes, parseList, parsePositiveInt } from './units.js';

const DEFAULT_SIZE_BYTES = 2 * 1024 ** 3;
const READ_BYTES = 4096;
const COMPRESSIONS: readonly Compression[] = ['zstd', 'deflate', 'none'];
/** The store the speed-up table divides by: DEFLATE, the default before zstd ran on every Node. */
const BASELINE_COMPRESSION: Compression = 'deflate';

interface Settings {
  readonly samples: number;
  readonly sizeBytes: number;
  readonly workers: number;
  readonly cacheBytes: number;
  readonly reads: number;
  readonly workingSetBytes: number;
  readonly seed: number;
  readonly dir: string;
  /** One store per compression; the first also serves the warm-read cases. */
  readonly compressions: readonly Compression[];
}

function readSettings(context: BenchContext): Settings {
  const str = optionText(context);
  const sizeBytes = str('size') === undefined ? DEFAULT_SIZE_BYTES : parseBytes(str('size')!, '--size');
  const cacheBytes =
    str('cache-size') === undefined ? 256 * 1024 ** 2 : parseBytes(str('cache-size')!, '--cache-size');
  if (sizeBytes < 64 * 1024 ** 2) throw new UsageError('--size must be at least 64MiB');
  const compressions = str('compress') === undefined ? ['zstd', 'deflate'] : parseList(str('compress')!);
  if (compressions.length === 0) throw new UsageError('--compress must name at least one compression');
  for (const c of compressions) {
    if (!(COMPRESSIONS as readonly string[]).includes(c))
      throw new UsageError(`--compress must list some of ${COMPRESSIONS.join(', ')}, got "${c}"`);
  }
  return {
    samples: context.samples,
    sizeBytes,
    workers:
      str('workers') === undefined ? availableParallelism() : parsePositiveInt(str('workers')!, '--workers'),
    cacheBytes,
    reads: str('reads') === undefined ? 20_000 : parsePositiveInt(str('reads')!, '--reads'),
    workingSetBytes: Math.min(sizeBytes, Math.floor(cacheBytes / 2)),
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    dir: str('dir') ?? tmpdir(),
    compressions: [...new Set(compressions)] as Compression[],
  };
}

/** Deterministic offsets (xorshift32) so every run reads the same places. */
function* offsets(seed: number, count: number, range: number): Generator<number> {
  let x = seed | 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    yield Math.floor(((x >>> 0) / 2 ** 32) * Math.floor((range - READ_BYTES) / READ_BYTES)) * READ_BYTES;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const RESTORE_COLUMNS: readonly DetailColumn[] = [
  { key: 'dataRateMBps', label: 'non-zero MB/s', format: 'decimal' },
  { key: 'ofDecodeLimit', label: 'of decode limit', format: 'text' },
  { key: 'eventLoopUtilization', label: 'coordinator busy', format: 'text' },
  { key: 'vsLocal', label: 'speed vs local restore', format: 'text' },
];

const LATENCY_COLUMNS: readonly DetailColumn[] = [
  { key: 'p50', label: 'p50', format: 'text' },
  { key: 'p99', label: 'p99', format: 'text' },
  { key: 'p999', label: 'p99.9', format: 'text' },
  { key: 'iops', label: 'IOPS', format: 'integer' },
];

function micros(seconds: number): string {
  return `${formatNumber(seconds * 1e6)} µs`;
}

async function runRestore(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const s = readSettings(context);
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-'));
  try {
    const [drive] = vmImageSet(s.seed, { drives: 1, sizeBytes: s.sizeBytes });
    const imagePath = join(scratch, 'drive-scsi0.raw');
    context.progress(`writing a ${formatBytes(s.sizeBytes)} synthetic image`);
    await writeImageFile(drive!.spec, imagePath);
    const stores: ColdStore[] = [];
    const pool = decodeLimitPool(s.workers);
    try {
      for (const compress of s.compressions) {
        context.progress(`backing it up (${compress}, 4 MiB chunks) …`);
        stores.push(await prepareColdStore(scratch, imagePath, compress));
      }
      await rm(imagePath);
      const out = join(scratch, 'restored.raw');
      for (let round = 1; round <= s.samples; round++) {
        // The stores alternate, first-to-last on odd rounds and back on even ones.
        const order = round % 2 === 1 ? stores : [...stores].reverse();
        for (const cold of order)
          await coldRound(
            cold,
            s,
            pool,
            out,
            (m) => context.progress(`round ${round}/${s.samples}: ${m}`),
            round % 2 === 0,
          );
      }
    } finally {
      await pool.destroy();
      for (const cold of stores) cold.server.stop();
    }
    const warmStore = stores[0]!;

    context.progress(
      `warm random ${READ_BYTES}-byte reads over a ${formatBytes(s.workingSetBytes)} working set …`,
    );
    const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
    const snap = await openSnapshot({ source: warmStore.storeDir, snapshot: warmStore.snapshot, cache });
    const reader = await snap.openArchive('drive-scsi0', { readaheadChunks: 0 });
    const warm = Buffer.alloc(4 * 1024 * 1024);
    for (let at = 0; at < s.workingSetBytes; at += warm.byteLength) await reader.readAt(warm, at);
    const latencyCases: CaseResult[] = [];
    for (const depth of [1, 16]) {
      const list = [...offsets(s.seed + depth, s.reads, s.workingSetBytes)];
      const latencies: number[] = [];
      let next = 0;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: depth }, async () => {
          const buffer = Buffer.alloc(READ_BYTES);
          while (next < list.length) {
            const offset = list[next++]!;
            const t = performance.now();
            await reader.readAt(buffer, offset);
            latencies.push((performance.now() - t) / 1000);
          }
        }),
      );
      const wall = (performance.now() - t0) / 1000;
      const sorted = [...latencies].sort((a, b) => a - b);
      latencyCases.push(
        measuredCase(`warm random 4 KiB reads, queue depth ${depth}`, READ_BYTES, latencies, {
          p50: micros(percentile(sorted, 50)),
          p99: micros(percentile(sorted, 99)),
          p999: micros(percentile(sorted, 99.9)),
          iops: Math.round(list.length / wall),
        }),
      );
    }
    const warmStats = cache.stats();
    await snap.close();
    await cache.close();

    const cases = stores.flatMap((cold) => coldCases(cold, s));
    const speedups = coldSpeedups(stores, BASELINE_COMPRESSION);
    const { dataBytes, tasks } = warmStore.chunks;
    return {
      benchmark: 'restore',
      title: `Read path: restore of a ${formatBytes(s.sizeBytes)} synthetic VM disk, decode limit, warm 4 KiB reads`,
      machine: machineInfo(),
      settings: {
        samples: s.samples,
        sizeBytes: s.sizeBytes,
        workers: s.workers,
        cacheBytes: s.cacheBytes,
        reads: s.reads,
        workingSetBytes: s.workingSetBytes,
        seed: s.seed,
        chunkBytes: 4 * 1024 * 1024,
        compress: s.compressions.join(','),
        zstdDecoder: zstdCodecInfo.decoder,
        source: 'local datastore (blobs in the page cache)',
      },
      sections: [
        {
          title: 'Cold full restore vs the decode limit of the same chunks',
          meanLabel: 'mean / run',
          cases,
          columns: RESTORE_COLUMNS,
          notes: [
            `Image: ${formatBytes(s.sizeBytes)}, ${formatBytes(dataBytes)} in non-zero chunks (${tasks.size} distinct); zero chunks are holes the restore neither fetches nor writes.`,
            `One datastore per compression (${s.compressions.join(', ')}), backed up from the same image; the rounds alternate between them. zstd decodes with ${zstdCodecInfo.decoder}.`,
            `The decode limit decodes every distinct non-zero chunk once (CRC-32, decompress, SHA-256) on a piscina pool of ${s.workers} threads with all chunks queued, blobs already in memory; "of decode limit" compares with the limit of the same store.`,
            'The restore row\'s throughput counts image bytes; "non-zero MB/s" counts only the bytes of non-zero chunks, which is what compares with the decode limit.',
            'The HTTP row restores the same image from `liverestore serve` (its own process, loopback, default options: keep-alive pool of 16 connections, no token); "speed vs local restore" is the local restore time divided by this one (goal ≥ 0.8).',
            'The "no output" row reads every non-zero chunk through a fresh cache with the same concurrency and discards it: the read path through the cache alone.',
            'The restore row is restoreArchive: the main thread fetches each distinct blob once and a decode thread verifies it and writes it at every offset where it occurs (page cache, background fdatasync every 256 MiB, final fsync, rename). The "through the cache (before)" row restores the same image the way restoreArchive did before (commit e7c03a9): readAt per chunk through the cache, copy out of the arena and writes from the main thread; the two alternate in order from round to round.',
            '"coordinator busy" is the event-loop utilisation of the main thread (fetching, cache bookkeeping, copying, writing) during the restore.',
          ],
        },
        {
          title: `Warm random ${READ_BYTES}-byte reads, ${formatBytes(s.workingSetBytes)} working set already cached`,
          meanLabel: 'mean latency',
          cases: latencyCases,
          columns: LATENCY_COLUMNS,
          notes: [
            `${s.reads} reads per case at deterministic 4 KiB-aligned offsets in the first ${formatBytes(s.workingSetBytes)} of the ${warmStore.compress} store's image, through CachedChunkReader.readAt in the coordinator's thread; readahead off. Cache after the run: ${warmStats.hits} hits, ${warmStats.misses} misses.`,
          ],
        },
      ],
      ...(speedups === undefined ? {} : { tables: [speedups] as PlainTable[] }),
      durationSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export const restoreBenchmark: Benchmark = {
  name: 'restore',
  summary: 'the read path: cold full restore vs the decode limit, warm random 4 KiB read latency',
  description: `
Writes a deterministic synthetic VM disk (@liverestore/testkit, default 2 GiB), backs it
up (4 MiB chunks) into one scratch datastore per --compress (default zstd and deflate,
so the default and the old default compare in the same run), then per sample and store
(alternating): decodes every distinct non-zero chunk on a piscina pool of --workers
threads with the blobs in memory (the decode limit), restores the image with
restoreArchive through a fresh ChunkCache with the same number of decode workers (cold
cache; the blobs are in the page cache), and restores it the way restoreArchive did
before (through the cache, the main thread copying and writing) as the baseline.
Finally measures warm random 4 KiB reads through the cache at queue depth 1 and 16 on
the first store. Prints each store's speed-up over the deflate store. Takes about 5
minutes with the defaults on a 2-core machine.`,
  defaultSamples: 5,
  options: [
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'image size', defaultText: '2GiB' },
    DECODE_WORKERS_OPTION,
    CACHE_SIZE_OPTION,
    {
      name: 'reads',
      type: 'string',
      valueName: 'N',
      description: 'random reads per latency case',
      defaultText: '20000',
    },
    {
      name: 'compress',
      type: 'string',
      valueName: 'LIST',
      description: 'one store per compression, comma-separated: zstd, deflate, none',
      defaultText: 'zstd,deflate',
    },
    VM_SEED_OPTION,
    SCRATCH_DIR_OPTION,
  ],
  run: runRestore,
};
