/*
 * C of `bench live-restore`, PBS's read path today: the properties its numbers rest on.
 * The cache (async-lru-cache.ts) bounds entries by count in LRU order, shares one load
 * between concurrent accesses and never keeps a failure; the drive reader returns the
 * image's bytes, lets reads of one drive overlap (no mutex) while fetching the chunks of
 * one read one after another, and shares its cache with the other drives.
 */

import { imageBytes } from '@liverestore/testkit';
import test from 'ava';
import { AsyncLruCache } from '../src/async-lru-cache.js';
import { pbsDecodePool } from '../src/pbs-decode-worker.js';
import { PBS_SHARED_CACHE_CHUNKS, PbsTodayDriveReader, sharedChunkCache } from '../src/pbs-today-reader.js';
import { mostUsedChunks } from '../src/remote-chunk-reader.js';
import { backedUpDrive, TEST_CHUNK_BYTES } from './pbs-fixture.js';

/** A load that resolves or rejects when the test says so. */
function deferred<T>(): { promise: Promise<T>; resolve(v: T): void; reject(e: Error): void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test('AsyncLruCache: at most `capacity` entries, the least recently used goes first', async (t) => {
  const cache = new AsyncLruCache<string, string>(2);
  const load = (k: string) => async () => `v${k}`;
  t.is(await cache.access('a', load('a')), 'va');
  t.is(await cache.access('b', load('b')), 'vb');
  t.is(await cache.access('a', () => Promise.reject(new Error('a is cached'))), 'va');
  t.is(await cache.access('c', load('c')), 'vc');
  t.is(cache.size, 2);
  t.true(cache.has('a') && cache.has('c'));
  t.false(cache.has('b'), 'b was the least recently used');
  t.deepEqual(cache.stats, { hits: 1, joins: 0, loads: 3, evictions: 1 });
  t.throws(() => new AsyncLruCache(0), { instanceOf: RangeError });
});

test('AsyncLruCache: concurrent accesses share one load; a failure reaches all and is not kept', async (t) => {
  const cache = new AsyncLruCache<string, string>(4);
  let loads = 0;
  const first = deferred<string>();
  const waiters = Array.from({ length: 5 }, () =>
    cache.access('k', () => {
      loads++;
      return first.promise;
    }),
  );
  t.is(loads, 1);
  t.is(cache.loading, 1);
  first.reject(new Error('fetch failed'));
  for (const w of waiters) await t.throwsAsync(w, { message: 'fetch failed' });
  t.is(cache.loading, 0);
  t.false(cache.has('k'), 'a failed load is not cached');
  const second = cache.access('k', async () => {
    loads++;
    return 'v';
  });
  t.is(await second, 'v');
  t.is(loads, 2, 'the next access loads again');
  t.deepEqual(cache.stats, { hits: 0, joins: 4, loads: 2, evictions: 0 });
  t.is(
    await cache
      .access('sync', () => {
        throw new Error('thrown, not returned');
      })
      .catch((e: Error) => e.message),
    'thrown, not returned',
  );
  t.is(cache.loading, 0);
});

test('PBS today reader: right bytes; reads of a drive overlap, the chunks of one read do not', async (t) => {
  const { spec, ref, source } = await backedUpDrive(t, 3, 9 * 1024 * 1024 + 8192);
  const cache = sharedChunkCache();
  t.is(cache.capacity, PBS_SHARED_CACHE_CHUNKS);
  const reader = await PbsTodayDriveReader.open(source, ref, 'drive-scsi0', cache);
  t.is(reader.name, 'drive-scsi0.img');

  // One read across four chunks, alone: its chunks are fetched one after another.
  const span = Buffer.alloc(3 * TEST_CHUNK_BYTES + 8192);
  await reader.read(span, TEST_CHUNK_BYTES - 4096);
  t.true(span.equals(imageBytes(spec, TEST_CHUNK_BYTES - 4096, span.length)));
  t.is(source.maxInFlight, 1, 'the chunks of one read are fetched one after another');

  const ranges = Array.from({ length: 40 }, (_, i) => ({
    offset: ((i * 104_729) % 2200) * 4096,
    length: 4096 * (1 + ((i * 13) % 64)),
  })).filter((r) => r.offset + r.length <= reader.size);
  ranges.push({ offset: reader.size - 8192, length: 8192 });
  const buffers = ranges.map((r) => Buffer.alloc(r.length));
  await Promise.all(ranges.map((r, i) => reader.read(buffers[i]!, r.offset)));
  ranges.forEach((r, i) => {
    t.true(buffers[i]!.equals(imageBytes(spec, r.offset, r.length)), `range ${i}`);
  });
  t.true(
    source.maxInFlight > 1,
    `concurrent reads of one drive overlap (${source.maxInFlight} fetches at once)`,
  );
  t.true(cache.size <= reader.index.chunkCount);
  t.is(new Set(source.fetched).size, source.fetched.length, 'no chunk fetched twice while it fits the cache');
});

test('PBS today reader: one fetch per chunk for concurrent readers and for every drive on the cache', async (t) => {
  const { ref, source } = await backedUpDrive(t, 3, 6 * 1024 * 1024);
  const cache = sharedChunkCache();
  const first = await PbsTodayDriveReader.open(source, ref, 'drive-scsi0', cache);
  // The same archive opened twice stands for two drives with chunks in common.
  const second = await PbsTodayDriveReader.open(source, ref, 'drive-scsi0', cache);
  const most = mostUsedChunks(first.index);
  const plain = Array.from({ length: first.index.chunkCount }, (_, i) => i).filter(
    (i) => !most.has(first.chunks.digestHex(i)),
  );
  t.true(plain.length >= 3, 'the drive has chunks outside the most-used hint');
  const at = first.index.chunkStart(plain[0]!);
  await Promise.all(Array.from({ length: 8 }, (_, k) => first.read(Buffer.alloc(4096), at + k * 4096)));
  t.is(source.fetched.length, 1, 'eight concurrent readers of one chunk: one fetch');
  t.is(cache.stats.joins, 7);
  await second.read(Buffer.alloc(4096), at);
  t.is(source.fetched.length, 1, "the other drive's read is a hit in the shared cache");
  t.is(second.chunks.stats.fetches, 0);
});

test('PBS today reader: the cache holds a number of chunks, the least recently used is fetched again', async (t) => {
  const { ref, source } = await backedUpDrive(t, 3, 6 * 1024 * 1024);
  const cache = sharedChunkCache(2);
  const reader = await PbsTodayDriveReader.open(source, ref, 'drive-scsi0', cache);
  const most = mostUsedChunks(reader.index);
  const seen = new Set<string>();
  const plain = Array.from({ length: reader.index.chunkCount }, (_, i) => i).filter((i) => {
    const hex = reader.chunks.digestHex(i);
    if (most.has(hex) || seen.has(hex)) return false;
    seen.add(hex);
    return true;
  });
  t.true(plain.length >= 3, 'three distinct chunks outside the most-used hint');
  const [a, b, c] = plain as [number, number, number];
  const read = (i: number) => reader.read(Buffer.alloc(4096), reader.index.chunkStart(i));
  await read(a);
  await read(b);
  await read(c);
  t.is(reader.chunks.stats.fetches, 3);
  await read(c);
  t.is(reader.chunks.stats.fetches, 3, 'the most recent chunk is still cached');
  await read(a);
  t.is(reader.chunks.stats.fetches, 4, 'the least recently used chunk was evicted and is fetched again');
  t.is(cache.size, 2);
});

test('PBS today reader on a decode pool (tokio workers): right bytes, decoded off the event loop', async (t) => {
  const { spec, ref, source } = await backedUpDrive(t, 3, 5 * 1024 * 1024 + 4096);
  const pool = pbsDecodePool(2);
  t.teardown(() => pool.close());
  let pooled = 0;
  const decode: typeof pool.decode = (task, transfer) => {
    pooled++;
    return pool.decode(task, transfer);
  };
  const reader = await PbsTodayDriveReader.open(source, ref, 'drive-scsi0', sharedChunkCache(), decode);
  const ranges = [
    { offset: 0, length: reader.size },
    { offset: TEST_CHUNK_BYTES - 4096, length: 2 * TEST_CHUNK_BYTES },
    { offset: reader.size - 4096, length: 4096 },
  ];
  const buffers = ranges.map((r) => Buffer.alloc(r.length));
  await Promise.all(ranges.map((r, i) => reader.read(buffers[i]!, r.offset)));
  ranges.forEach((r, i) => {
    t.true(buffers[i]!.equals(imageBytes(spec, r.offset, r.length)), `range ${i}`);
  });
  t.is(pooled, reader.chunks.stats.fetches, 'every fetched chunk was decoded on the pool');
  t.true(pooled >= reader.index.chunkCount - 1);
});
