/**
 * The three systems `bench live-restore` compares, opened on the same `liverestore serve`
 * (through the same network-conditions proxy): A, the old PBS read path (old-reader.ts),
 * C, PBS's read path today (pbs-today-reader.ts), and B, liverestore's shared cache and
 * cached readers. Used in-process by the API mode (live-restore-child.ts) and by the NBD
 * server of A and C (pbs-nbd-child.ts).
 */

import { parseSnapshotSpec, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkIndex, chunkDigest, toHex } from '@liverestore/format';
import { ChunkCache, HttpChunkSource, openSnapshot } from '@liverestore/reader';
import type { DriveTarget } from './live-workload.js';
import { OldDriveReader } from './old-reader.js';
import { pbsDecodePool } from './pbs-decode-worker.js';
import { PbsTodayDriveReader, sharedChunkCache } from './pbs-today-reader.js';

/** Opened drives of one system and how to close them. */
export interface OpenedSystem {
  readonly drives: readonly (DriveTarget & { readonly index: ChunkIndex; readonly name: string })[];
  /** Counters to report (cache stats for B and C, fetch counts for A and C). */
  stats(): Record<string, number>;
  close(): Promise<void>;
}

/** Settings of B's cache and readers. */
export interface CacheSettings {
  readonly cacheBytes: number;
  readonly workers: number;
  readonly readaheadChunks: number;
}

/** A drive of A or C: a DriveTarget with its name and index. */
type PbsDrive = OpenedSystem['drives'][number];

/**
 * Opens one PBS-style reader per drive (`openDrive`) over one product HTTP client, as
 * proxmox-backup-qemu opens its images over one BackupReader connection.
 */
async function openPbsSystem<D extends PbsDrive>(
  url: string,
  snapshot: string,
  names: readonly string[],
  openDrive: (source: HttpChunkSource, ref: SnapshotRef, name: string) => Promise<D>,
  stats: (drives: readonly D[]) => Record<string, number>,
): Promise<OpenedSystem> {
  const source = await HttpChunkSource.open(url);
  try {
    const ref = await source.resolveSnapshot(parseSnapshotSpec(snapshot));
    const drives: D[] = [];
    for (const name of names) drives.push(await openDrive(source, ref, name));
    return { drives, stats: () => stats(drives), close: () => source.close() };
  } catch (error) {
    await source.close();
    throw error;
  }
}

/** A: one old-design reader per drive over the product's HTTP client. */
export function openOldSystem(
  url: string,
  snapshot: string,
  names: readonly string[],
): Promise<OpenedSystem> {
  return openPbsSystem(
    url,
    snapshot,
    names,
    (source, ref, name) => OldDriveReader.open(source, ref, name),
    (drives) => ({
      fetches: drives.reduce((n, d) => n + d.stats.fetches, 0),
      hits: drives.reduce((n, d) => n + d.stats.hits, 0),
    }),
  );
}

/**
 * C: PBS today, one 64-entry cache shared by every drive's CachedChunkReader model;
 * decodes inline, or on `decodeThreads` threads (tokio's workers) when that is > 0.
 */
export async function openPbsTodaySystem(
  url: string,
  snapshot: string,
  names: readonly string[],
  decodeThreads = 0,
): Promise<OpenedSystem> {
  const cache = sharedChunkCache();
  const pool = decodeThreads > 0 ? pbsDecodePool(decodeThreads) : undefined;
  let system: OpenedSystem;
  try {
    system = await openPbsSystem(
      url,
      snapshot,
      names,
      (source, ref, name) => PbsTodayDriveReader.open(source, ref, name, cache, pool?.decode),
      (drives) => ({
        fetches: drives.reduce((n, d) => n + d.chunks.stats.fetches, 0),
        hintHits: drives.reduce((n, d) => n + d.chunks.stats.hintHits, 0),
        hits: cache.stats.hits,
        dedupJoins: cache.stats.joins,
        evictions: cache.stats.evictions,
      }),
    );
  } catch (error) {
    await pool?.close();
    throw error;
  }
  if (pool === undefined) return system;
  return {
    ...system,
    close: async () => {
      await system.close();
      await pool.close();
    },
  };
}

/** Opens A or C, the PBS read paths (`decodeThreads`: C's, see openPbsTodaySystem). */
export function openPbsReadPath(
  system: 'A' | 'C',
  url: string,
  snapshot: string,
  names: readonly string[],
  decodeThreads = 0,
): Promise<OpenedSystem> {
  return system === 'A'
    ? openOldSystem(url, snapshot, names)
    : openPbsTodaySystem(url, snapshot, names, decodeThreads);
}

/** B: liverestore's shared ChunkCache with a CachedChunkReader per drive. */
export async function openNewSystem(
  url: string,
  snapshot: string,
  names: readonly string[],
  settings: CacheSettings,
): Promise<OpenedSystem> {
  const cache = new ChunkCache({ cacheBytes: settings.cacheBytes, workers: settings.workers });
  try {
    const snap = await openSnapshot({ source: url, snapshot, cache });
    const drives = [];
    for (const name of names) {
      const reader = await snap.openArchive(name, { readaheadChunks: settings.readaheadChunks });
      drives.push({
        name: reader.name,
        index: reader.index,
        size: reader.size,
        read: async (buffer: Uint8Array, offset: number) => {
          await reader.readAt(buffer, offset);
        },
      });
    }
    return {
      drives,
      stats: () => {
        const s = cache.stats();
        return { hits: s.hits, misses: s.misses, dedupJoins: s.dedupJoins, prefetches: s.prefetches };
      },
      close: async () => {
        await snap.close();
        await cache.close();
      },
    };
  } catch (error) {
    await cache.close();
    throw error;
  }
}

/** Digests of the all-zero chunk at the chunk lengths of a fixed index (first and last chunk). */
export function zeroDigests(index: ChunkIndex): Set<string> {
  const out = new Set<string>();
  if (index.chunkCount === 0) return out;
  for (const i of [0, index.chunkCount - 1]) {
    out.add(toHex(chunkDigest(new Uint8Array(index.chunkEnd(i) - index.chunkStart(i)))));
  }
  return out;
}

/** Distinct non-zero chunks of some drives' indexes: the fewest chunk fetches a full copy needs. */
export function distinctDataChunks(drives: readonly { readonly index: ChunkIndex }[]): number {
  const seen = new Set<string>();
  for (const { index } of drives) {
    const zero = zeroDigests(index);
    for (let i = 0; i < index.chunkCount; i++) {
      const hex = toHex(index.digestAt(i));
      if (!zero.has(hex)) seen.add(hex);
    }
  }
  return seen.size;
}

/** The indexes of the archives `names` (drive names, `.img` optional) of a snapshot in a datastore or server. */
export async function readIndexes(
  source: string,
  snapshot: string,
  names: readonly string[],
): Promise<{ readonly name: string; readonly index: ChunkIndex }[]> {
  const cache = new ChunkCache({ cacheBytes: 16 * 1024 ** 2, workers: 0 });
  try {
    const snap = await openSnapshot({ source, snapshot, cache });
    try {
      const out = [];
      for (const n of names) {
        const { name, index } = await snap.readIndex(n);
        out.push({ name, index });
      }
      return out;
    } finally {
      await snap.close();
    }
  } finally {
    await cache.close();
  }
}
