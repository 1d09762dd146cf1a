/**
 * `pnpm bench restore`: the read path. A cold full restore of a synthetic VM disk from a
 * local datastore, next to the pure decode rate of the same chunks on a pool of the same
 * size in the same run (the ceiling the restore can reach), and warm random 4 KiB read
 * latency through the cache at queue depth 1 and 16.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { collectRestoreChunks, decodeLimitPool, timeDecodeLimit } from './decode-limit.js';
import { UsageError } from './errors.js';
import { startLiverestoreProcess } from './liverestore-process.js';
import { machineInfo } from './machine.js';
import { optionText } from './options.js';
import { type BenchResult, type CaseResult, type DetailColumn, measuredCase } from './result.js';
import { formatBytes, formatNumber, formatRate, mbPerSecond, parseBytes, parsePositiveInt } from './units.js';

const DEFAULT_SIZE_BYTES = 2 * 1024 ** 3;
const READ_BYTES = 4096;

interface Settings {
  readonly samples: number;
  readonly sizeBytes: number;
  readonly workers: number;
  readonly cacheBytes: number;
  readonly reads: number;
  readonly workingSetBytes: number;
  readonly seed: number;
  readonly dir: string;
}

function readSettings(context: BenchContext): Settings {
  const str = optionText(context);
  const sizeBytes = str('size') === undefined ? DEFAULT_SIZE_BYTES : parseBytes(str('size')!, '--size');
  const cacheBytes =
    str('cache-size') === undefined ? 256 * 1024 ** 2 : parseBytes(str('cache-size')!, '--cache-size');
  if (sizeBytes < 64 * 1024 ** 2) throw new UsageError('--size must be at least 64MiB');
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
    const storeDir = join(scratch, 'store');
    const store = await Datastore.create(storeDir);
    context.progress('backing it up (deflate, 4 MiB chunks) …');
    const result = await backup(store, {
      type: 'vm',
      id: '100',
      inputs: [{ name: 'drive-scsi0', path: imagePath }],
    });
    await rm(imagePath);

    // The chunks a restore decodes: every distinct non-zero chunk of the image.
    const chunks = await collectRestoreChunks(storeDir, result.snapshot, ['drive-scsi0']);
    const { tasks, dataBytes, distinctBytes } = chunks;

    const pool = decodeLimitPool(s.workers);
    // `liverestore serve` in its own process, as a backup server would be.
    const server = await startLiverestoreProcess(['serve', '--store', storeDir, '--listen', '127.0.0.1:0']);
    const httpSamples: number[] = [];
    const decodeSamples: number[] = [];
    const restoreSamples: number[] = [];
    const readSamples: number[] = [];
    const elu: number[] = [];
    try {
      for (let round = 1; round <= s.samples; round++) {
        context.progress(
          `round ${round}/${s.samples}: decode limit (${tasks.size} chunks on ${s.workers} threads) …`,
        );
        decodeSamples.push((await timeDecodeLimit(pool, chunks)).seconds);

        context.progress(`round ${round}/${s.samples}: cold full read through the cache (no output) …`);
        {
          const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
          const snap = await openSnapshot({ source: storeDir, snapshot: result.snapshot, cache });
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
          readSamples.push((performance.now() - t) / 1000);
          await snap.close();
          await cache.close();
        }

        context.progress(`round ${round}/${s.samples}: cold full restore …`);
        const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
        const snap = await openSnapshot({ source: storeDir, snapshot: result.snapshot, cache });
        const reader = await snap.openArchive('drive-scsi0');
        const out = join(scratch, 'restored.raw');
        const before = performance.eventLoopUtilization();
        const t1 = performance.now();
        await restoreArchive(reader, out, { concurrency: 2 * s.workers + 2 });
        restoreSamples.push((performance.now() - t1) / 1000);
        elu.push(performance.eventLoopUtilization(before).utilization);
        await snap.close();
        await cache.close();
        await rm(out);

        context.progress(`round ${round}/${s.samples}: cold full restore over loopback HTTP …`);
        const httpCache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
        const httpSnap = await openSnapshot({
          source: server.address,
          snapshot: result.snapshot,
          cache: httpCache,
        });
        const httpReader = await httpSnap.openArchive('drive-scsi0');
        const t2 = performance.now();
        await restoreArchive(httpReader, out, { concurrency: 2 * s.workers + 2 });
        httpSamples.push((performance.now() - t2) / 1000);
        await httpSnap.close();
        await httpCache.close();
        await rm(out);
      }
    } finally {
      await pool.destroy();
      server.stop();
    }

    context.progress(
      `warm random ${READ_BYTES}-byte reads over a ${formatBytes(s.workingSetBytes)} working set …`,
    );
    const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
    const snap = await openSnapshot({ source: storeDir, snapshot: result.snapshot, cache });
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

    const decodeCase = measuredCase(
      `decode limit: ${tasks.size} distinct chunks on ${s.workers} threads`,
      distinctBytes,
      decodeSamples,
    );
    const decodeRate = decodeCase.throughputMBps!;
    const meanOf = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const readCase = measuredCase('cold full read through the cache, no output', s.sizeBytes, readSamples, {
      dataRateMBps: mbPerSecond(dataBytes, meanOf(readSamples)),
      ofDecodeLimit: `${formatNumber((100 * mbPerSecond(dataBytes, meanOf(readSamples))) / decodeRate)} %`,
      eventLoopUtilization: '',
    });
    const restoreCase = measuredCase(
      'cold full restore (restoreArchive, fresh cache)',
      s.sizeBytes,
      restoreSamples,
      {
        dataRateMBps: mbPerSecond(
          dataBytes,
          restoreSamples.reduce((a, b) => a + b, 0) / restoreSamples.length,
        ),
        ofDecodeLimit: `${formatNumber((100 * mbPerSecond(dataBytes, restoreSamples.reduce((a, b) => a + b, 0) / restoreSamples.length)) / decodeRate)} %`,
        eventLoopUtilization: `${formatNumber(100 * (elu.reduce((a, b) => a + b, 0) / elu.length))} %`,
      },
    );
    const httpCase = measuredCase(
      'cold full restore over loopback HTTP (liverestore serve)',
      s.sizeBytes,
      httpSamples,
      {
        dataRateMBps: mbPerSecond(dataBytes, meanOf(httpSamples)),
        ofDecodeLimit: `${formatNumber((100 * mbPerSecond(dataBytes, meanOf(httpSamples))) / decodeRate)} %`,
        eventLoopUtilization: '',
        vsLocal: `${(meanOf(restoreSamples) / meanOf(httpSamples)).toFixed(2)}`,
      },
    );
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
        compress: 'deflate',
        source: 'local datastore (blobs in the page cache)',
      },
      sections: [
        {
          title: 'Cold full restore vs the decode limit of the same chunks',
          meanLabel: 'mean / run',
          cases: [decodeCase, readCase, restoreCase, httpCase],
          columns: RESTORE_COLUMNS,
          notes: [
            `Image: ${formatBytes(s.sizeBytes)}, ${formatBytes(dataBytes)} in non-zero chunks (${tasks.size} distinct); zero chunks are holes the restore neither fetches nor writes.`,
            `The decode limit decodes every distinct non-zero chunk once (CRC-32, inflate, SHA-256) on a piscina pool of ${s.workers} threads with all chunks queued, blobs already in memory: ${formatRate(decodeRate)} of plaintext.`,
            'The restore row\'s throughput counts image bytes; "non-zero MB/s" counts only the bytes of non-zero chunks, which is what compares with the decode limit.',
            'The HTTP row restores the same image from `liverestore serve` (its own process, loopback, default options: keep-alive pool of 16 connections, no token); "speed vs local restore" is the local restore time divided by this one (goal ≥ 0.8).',
            'The "no output" row reads every non-zero chunk through a fresh cache with the same concurrency and discards it: the read path alone. The restore row adds writing the image (page cache, background fdatasync every 256 MiB, final fsync) on the same two cores.',
            '"coordinator busy" is the event-loop utilisation of the main thread (fetching, cache bookkeeping, copying, writing) during the restore.',
          ],
        },
        {
          title: `Warm random ${READ_BYTES}-byte reads, ${formatBytes(s.workingSetBytes)} working set already cached`,
          meanLabel: 'mean latency',
          cases: latencyCases,
          columns: LATENCY_COLUMNS,
          notes: [
            `${s.reads} reads per case at deterministic 4 KiB-aligned offsets in the first ${formatBytes(s.workingSetBytes)} of the image, through CachedChunkReader.readAt in the coordinator's thread; readahead off. Cache after the run: ${warmStats.hits} hits, ${warmStats.misses} misses.`,
          ],
        },
      ],
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
up (DEFLATE, 4 MiB chunks) into a scratch datastore, then per sample: decodes every
distinct non-zero chunk on a piscina pool of --workers threads with the blobs in memory
(the decode limit), and restores the image with restoreArchive through a fresh
ChunkCache with the same number of decode workers (cold cache; the blobs are in the
page cache). Finally measures warm random 4 KiB reads through the cache at queue depth
1 and 16. Takes about 3 minutes with the defaults on a 2-core machine (most of it the
backup).`,
  defaultSamples: 5,
  options: [
    { name: 'size', type: 'string', valueName: 'SIZE', description: 'image size', defaultText: '2GiB' },
    {
      name: 'workers',
      type: 'string',
      valueName: 'N',
      description: 'decode threads',
      defaultText: 'machine parallelism',
    },
    {
      name: 'cache-size',
      type: 'string',
      valueName: 'SIZE',
      description: 'chunk cache budget',
      defaultText: '256MiB',
    },
    {
      name: 'reads',
      type: 'string',
      valueName: 'N',
      description: 'random reads per latency case',
      defaultText: '20000',
    },
    { name: 'seed', type: 'string', valueName: 'N', description: 'testkit VM seed', defaultText: '1' },
    {
      name: 'dir',
      type: 'string',
      valueName: 'DIR',
      description: 'scratch directory',
      defaultText: 'the OS temp dir',
    },
  ],
  run: runRestore,
};
