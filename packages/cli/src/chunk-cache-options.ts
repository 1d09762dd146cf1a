import type { S3ConnectionOptions } from '@liverestore/datastore';
import {
  type ChunkSource,
  DEFAULT_PERSISTENT_CACHE_BYTES,
  type HttpChunkSourceOptions,
  openChunkSource,
  PersistentCacheSource,
  type PersistentChunkCacheOptions,
  type PersistentChunkCacheStats,
} from '@liverestore/reader';
import { UsageError } from './errors.js';
import { formatBytes, parseBytes } from './units.js';

/** `--chunk-cache`/`--chunk-cache-size` as they read in every command that reads a source's chunks. */
export const CHUNK_CACHE_OPTIONS = {
  'chunk-cache': { type: 'string' },
  'chunk-cache-size': { type: 'string' },
} as const;

/** The help lines of {@link CHUNK_CACHE_OPTIONS}, descriptions starting at `column` like the command's other options. */
export function chunkCacheHelp(column = 22): string {
  const pad = ' '.repeat(column);
  return [
    `${'  --chunk-cache DIR'.padEnd(column)}keep the chunk blobs fetched from --from in DIR (a cache`,
    `${pad}that outlives the process; processes may share it): the`,
    `${pad}next run reads them there instead of fetching them again`,
    '  --chunk-cache-size SIZE',
    `${pad}most bytes kept in DIR, least recently used deleted first`,
    `${pad}(default ${DEFAULT_PERSISTENT_CACHE_BYTES / 1024 ** 3}GiB)`,
  ].join('\n');
}

/** The persistent cache the options ask for; undefined without `--chunk-cache`. */
export function chunkCacheFromOptions(
  values: { 'chunk-cache'?: string | undefined; 'chunk-cache-size'?: string | undefined },
  command: string,
): PersistentChunkCacheOptions | undefined {
  const dir = values['chunk-cache'];
  const sizeText = values['chunk-cache-size'];
  if (dir === undefined) {
    if (sizeText !== undefined)
      throw new UsageError(`${command}: --chunk-cache-size needs --chunk-cache DIR`);
    return undefined;
  }
  if (dir === '') throw new UsageError(`${command}: --chunk-cache needs a directory`);
  if (sizeText === undefined) return { dir };
  const capacityBytes = parseBytes(sizeText, '--chunk-cache-size');
  if (capacityBytes <= 0)
    throw new UsageError(
      `${command}: --chunk-cache-size must be more than 0 (leave out --chunk-cache to turn it off)`,
    );
  return { dir, capacityBytes };
}

/**
 * The source a command reads: `from` as {@link openChunkSource} opens it, wrapped in the
 * persistent chunk cache when one is asked for. The caller closes it (which closes both).
 */
export async function openCachedSource(
  from: string,
  http: HttpChunkSourceOptions,
  chunkCache: PersistentChunkCacheOptions | undefined,
  s3: S3ConnectionOptions = {},
): Promise<ChunkSource> {
  const origin = await openChunkSource(from, http, s3);
  if (chunkCache === undefined) return origin;
  try {
    return await PersistentCacheSource.open(origin, chunkCache);
  } catch (err) {
    await origin.close?.();
    throw err;
  }
}

/** The persistent cache's counters when `source` is one, once its writes in progress ended (a command's summary). */
export async function chunkCacheStats(source: ChunkSource): Promise<PersistentChunkCacheStats | undefined> {
  if (!(source instanceof PersistentCacheSource)) return undefined;
  await source.cache.idle();
  return source.cache.stats();
}

/** One summary line of {@link chunkCacheStats}. */
export function chunkCacheLine(stats: PersistentChunkCacheStats): string {
  return (
    `chunk cache: ${stats.hits} read there, ${stats.misses} fetched, ${stats.stored} stored, ` +
    `${stats.evictions} evicted, ${formatBytes(stats.bytes)} of ${formatBytes(stats.capacityBytes)} used`
  );
}
