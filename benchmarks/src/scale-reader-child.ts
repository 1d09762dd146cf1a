/**
 * One reader process of `bench scale`, started by scale-readers.ts with an IPC channel:
 * opens its readers (one shared ChunkCache, as one restore host would have), says
 * `ready`, waits for `go`, then every reader copies its whole drive sequentially in
 * `readBytes` pieces through `leaseAt` (the background copy of a live restore), hashing
 * what it got; it answers with one `done` message and exits.
 *
 *   child_process.fork('scale-reader-child.js', [JSON.stringify(ReaderChildConfig)])
 *
 * An s3:// origin takes its endpoint and keys from AWS_* in the environment.
 */

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  type CachedChunkReader,
  ChunkCache,
  type ChunkSource,
  openChunkSource,
  openSnapshot,
  type Snapshot,
} from '@liverestore/reader';
import { peakRssBytes } from './proc-stats.js';

/** One reader: a whole drive of a snapshot. */
export interface ReaderTask {
  readonly snapshot: string;
  readonly drive: string;
}

/** What the parent passes as the only argument. */
export interface ReaderChildConfig {
  /** `http://…` (serve, nginx) or `s3://BUCKET/STORE` (RGW, or nginx before it). */
  readonly origin: string;
  readonly cacheBytes: number;
  readonly workers: number;
  /** ChunkCache `blobBudgetBytes`; absent: the cache's default. */
  readonly blobBudgetBytes?: number;
  readonly readaheadChunks: number;
  readonly readBytes: number;
  /**
   * Open the origin once and let every snapshot share it (its connections and its lanes of
   * fetches, so the bytes in flight are the source's, not the snapshots'); else one source
   * per snapshot.
   */
  readonly sharedSource: boolean;
  /** Diagnostic: a full GC of the main thread this often while the readers run (needs --expose-gc); 0: never. */
  readonly gcEveryMs: number;
  readonly readers: readonly ReaderTask[];
}

/** What one reader did. */
export interface ReaderOutcome extends ReaderTask {
  readonly bytes: number;
  readonly sha256: string;
  /** Wall-clock ms (performance.timeOrigin based, comparable across processes) of its first read and last answer. */
  readonly startMs: number;
  readonly endMs: number;
  /** Latency of every `readAt`, ms, in read order. */
  readonly readMs: readonly number[];
}

/**
 * The largest of each part of a process's memory seen while its readers ran (sampled every
 * {@link MEMORY_SAMPLE_MS}): where the resident set above the cache goes.
 */
export interface MemoryPeaks {
  /** V8's heap in use (JS objects). */
  readonly heapUsedBytes: number;
  /** Memory outside the heap that JS objects hold: ArrayBuffers, and the SharedArrayBuffers of the cache. */
  readonly externalBytes: number;
  /** The part of `external` in ArrayBuffers and SharedArrayBuffers (blobs, buffers, the cache's pages). */
  readonly arrayBuffersBytes: number;
  /** The most the cache's blobs between fetch and decode held at once (its `peakBlobBytes`, as charged). */
  readonly blobBytes: number;
  /** The sample with the largest resident set: what the process held then (rss, V8 heap, ArrayBuffers). */
  readonly atRssPeak: {
    readonly rssBytes: number;
    readonly heapUsedBytes: number;
    readonly heapTotalBytes: number;
    readonly arrayBuffersBytes: number;
  };
}

/** How often a reader process samples its memory while its readers run. */
export const MEMORY_SAMPLE_MS = 20;

/** Child → parent messages. */
export type ChildMessage =
  | { readonly type: 'ready' }
  | {
      readonly type: 'done';
      readonly readers: readonly ReaderOutcome[];
      readonly peakRssBytes: number | null;
      readonly memory: MemoryPeaks;
      readonly cache: Readonly<Record<string, number>>;
    };

/** Parent → child messages. */
export type ParentMessage = { readonly type: 'go' };

function now(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Copies the whole drive in `readBytes` pieces, timing each and hashing the bytes. Each
 * piece is leased (`leaseAt`: views on the cache's pages, released once hashed), as a live
 * restore's background copy reads: no read buffer of the reader's own.
 */
async function copyDrive(
  task: ReaderTask,
  reader: CachedChunkReader,
  readBytes: number,
): Promise<ReaderOutcome> {
  const hash = createHash('sha256');
  const readMs: number[] = [];
  const startMs = now();
  for (let offset = 0; offset < reader.size; offset += readBytes) {
    const t = performance.now();
    const lease = await reader.leaseAt(offset, Math.min(readBytes, reader.size - offset));
    readMs.push(performance.now() - t);
    try {
      for (const view of lease.views) hash.update(view);
    } finally {
      lease.release();
    }
  }
  return { ...task, bytes: reader.size, sha256: hash.digest('hex'), startMs, endMs: now(), readMs };
}

/** Samples process.memoryUsage() until stopped; the largest of each part. */
function sampleMemory(): { stop(): Omit<MemoryPeaks, 'blobBytes'> } {
  let heapUsedBytes = 0;
  let externalBytes = 0;
  let arrayBuffersBytes = 0;
  let atRssPeak = { rssBytes: 0, heapUsedBytes: 0, heapTotalBytes: 0, arrayBuffersBytes: 0 };
  const sample = (): void => {
    const m = process.memoryUsage();
    if (m.rss > atRssPeak.rssBytes)
      atRssPeak = {
        rssBytes: m.rss,
        heapUsedBytes: m.heapUsed,
        heapTotalBytes: m.heapTotal,
        arrayBuffersBytes: m.arrayBuffers,
      };
    heapUsedBytes = Math.max(heapUsedBytes, m.heapUsed);
    externalBytes = Math.max(externalBytes, m.external);
    arrayBuffersBytes = Math.max(arrayBuffersBytes, m.arrayBuffers);
  };
  const timer = setInterval(sample, MEMORY_SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { heapUsedBytes, externalBytes, arrayBuffersBytes, atRssPeak };
    },
  };
}

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve, reject) =>
    process.send!(message, undefined, {}, (e) => (e ? reject(e) : resolve())),
  );
}

const goMessage = new Promise<void>((resolve) => {
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'go') resolve();
  });
});

const config = JSON.parse(process.argv[2] ?? '{}') as ReaderChildConfig;
const cache = new ChunkCache({
  cacheBytes: config.cacheBytes,
  workers: config.workers,
  ...(config.blobBudgetBytes === undefined ? {} : { blobBudgetBytes: config.blobBudgetBytes }),
});
const snapshots = new Map<string, Snapshot>();
let shared: ChunkSource | undefined;
try {
  if (config.sharedSource) shared = await openChunkSource(config.origin);
  const readers: CachedChunkReader[] = [];
  for (const task of config.readers) {
    let snap = snapshots.get(task.snapshot);
    if (snap === undefined) {
      snap = await openSnapshot({ source: shared ?? config.origin, snapshot: task.snapshot, cache });
      snapshots.set(task.snapshot, snap);
    }
    readers.push(await snap.openArchive(task.drive, { readaheadChunks: config.readaheadChunks }));
  }
  await send({ type: 'ready' });
  await goMessage;
  const sampler = sampleMemory();
  const collect = (globalThis as { gc?: () => void }).gc;
  const gcTimer =
    config.gcEveryMs > 0 && collect !== undefined ? setInterval(collect, config.gcEveryMs) : undefined;
  const outcomes = await Promise.all(
    config.readers.map((task, i) => copyDrive(task, readers[i]!, config.readBytes)),
  );
  const memory = sampler.stop();
  clearInterval(gcTimer);
  const s = cache.stats();
  await send({
    type: 'done',
    readers: outcomes,
    peakRssBytes: (await peakRssBytes('self')) ?? null,
    memory: { ...memory, blobBytes: s.peakBlobBytes },
    cache: { hits: s.hits, misses: s.misses, dedupJoins: s.dedupJoins, prefetches: s.prefetches },
  });
} finally {
  for (const snap of snapshots.values()) await snap.close();
  await shared?.close?.();
  await cache.close();
  process.disconnect?.();
}
