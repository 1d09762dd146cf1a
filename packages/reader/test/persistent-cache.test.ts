/*
 * The persistent chunk cache (PersistentChunkCache) and the source that wraps another in
 * it (PersistentCacheSource): restores through it, what survives a restart, damaged
 * entries, several processes on one directory, a full disk.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { decodeChunk, encodeChunk, toHex } from '@liverestore/format';
import { imageBytes, mountSmallTmpfs } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  ChunkCache,
  type ChunkSource,
  LocalChunkSource,
  openSnapshot,
  PersistentCacheSource,
  PersistentChunkCache,
  restoreArchive,
} from '../src/index.js';
import { CountingSource, fileSharedStore, MemorySource, MiB, testDir, withTimeout } from './helpers.js';

const CHUNK = MiB;

/** One datastore for the whole file (only read): one 6 MiB (+ a tail) drive in 1 MiB chunks. */
const sharedStore = fileSharedStore(
  test,
  'lr-pcache-store-',
  // Mostly incompressible: the blobs are about as large as the chunks (the full-disk test).
  { sizeBytes: 6 * MiB + 4321, seed: 11, mix: { zero: 0.2, text: 0.2, random: 0.6 } },
  CHUNK,
);

/** The origin of a test: the shared store, counted. */
async function countedOrigin(t: ExecutionContext): Promise<CountingSource> {
  const { store } = await sharedStore();
  const origin = new CountingSource(await LocalChunkSource.open(store.dir));
  t.teardown(() => origin.inner.close?.());
  return origin;
}

/** Restores the drive through `source` on a fresh chunk cache and checks every byte. */
async function restoreThrough(t: ExecutionContext, source: ChunkSource): Promise<ChunkCache> {
  const { spec, ref } = await sharedStore();
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: { ...ref }, cache });
  const reader = await snapshot.openArchive('drive-scsi0');
  const target = join(await testDir(t), 'restored.img');
  await withTimeout(restoreArchive(reader, target, { concurrency: 4 }), 30_000, 'restore');
  t.true((await readFile(target)).equals(imageBytes(spec, 0, spec.sizeBytes)), 'every byte restored');
  await snapshot.close();
  return cache;
}

/** The entries (blob files) under a cache directory, and any temp files left there. */
async function filesIn(dir: string): Promise<{ entries: Map<string, number>; temps: string[] }> {
  const entries = new Map<string, number>();
  const temps: string[] = [];
  for (const prefix of await readdir(dir)) {
    if (!/^[0-9a-f]{4}$/.test(prefix)) continue;
    for (const name of await readdir(join(dir, prefix))) {
      if (name.startsWith('.tmp-')) temps.push(name);
      else entries.set(name, (await stat(join(dir, prefix, name))).size);
    }
  }
  return { entries, temps };
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** A blob of 64 KiB (uncompressed: its size is known) filled with `fill`. */
function blobOf(fill: number): { hex: string; blob: Uint8Array } {
  const { digest, blob } = encodeChunk(new Uint8Array(64 * 1024).fill(fill), { compress: 'none' });
  return { hex: toHex(digest), blob };
}

test('a second restore through the cache fetches nothing from the origin', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const origin = await countedOrigin(t);
  const first = await PersistentCacheSource.open(origin, { dir });
  await restoreThrough(t, first);
  const fetched = origin.fetchCount;
  t.true(fetched > 0);
  await first.cache.close();
  t.is((await filesIn(dir)).entries.size, origin.fetches.size, 'one entry per chunk fetched');

  const second = await PersistentCacheSource.open(origin, { dir });
  await restoreThrough(t, second);
  t.is(origin.fetchCount, fetched, 'no chunk fetched from the origin again');
  t.is(second.cache.stats().hits, origin.fetches.size);
  await second.cache.close();
});

test("blobs the cache directory answers are read into the chunk cache's blob memory, used again", async (t) => {
  const dir = join(await testDir(t), 'cache');
  const origin = await countedOrigin(t);
  const first = await PersistentCacheSource.open(origin, { dir });
  await restoreThrough(t, first);
  await first.cache.close();

  const { spec, ref } = await sharedStore();
  const warm = await PersistentCacheSource.open(origin, { dir });
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source: warm, snapshot: { ...ref }, cache });
  const reader = await snapshot.openArchive('drive-scsi0');
  const buffer = Buffer.alloc(4096);
  for (let at = 0; at < reader.size; at += CHUNK) {
    await reader.readAt(buffer, at);
    t.true(buffer.equals(imageBytes(spec, at, 4096)));
  }
  t.true(warm.cache.stats().hits > 1);
  t.true(cache.stats().blobMemoryReused > 0, `reused ${cache.stats().blobMemoryReused} times`);
  await snapshot.close();
  await warm.cache.close();
});

test('the cache stays within its byte bound: least recently used entries go first', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const blobs = Array.from({ length: 6 }, (_, i) => blobOf(i + 1));
  const size = blobs[0]!.blob.length;
  const cache = await PersistentChunkCache.open({ dir, capacityBytes: 4 * size });
  t.teardown(() => cache.close());
  for (const { hex, blob } of blobs.slice(0, 4)) {
    cache.store(hex, blob);
    await cache.idle();
  }
  t.deepEqual(await cache.read(blobs[0]!.hex), blobs[0]!.blob, 'a hit makes the oldest the newest');
  for (const { hex, blob } of blobs.slice(4)) cache.store(hex, blob);
  cache.checkInvariants();
  await cache.idle();
  cache.checkInvariants();
  const { entries, temps } = await filesIn(dir);
  t.deepEqual([...entries.keys()].sort(), [0, 3, 4, 5].map((i) => blobs[i]!.hex).sort());
  t.true(sum(entries.values()) <= 4 * size);
  t.deepEqual(temps, []);
  t.like(cache.stats(), { stored: 6, evictions: 2, entries: 4, bytes: 4 * size, hits: 1 });
  t.is(await cache.read(blobs[1]!.hex), undefined, 'an evicted entry is a miss');
});

test('after a restart the LRU order comes from mtimes, which hits refresh at most once per interval', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const blobs = Array.from({ length: 4 }, (_, i) => blobOf(i + 1));
  const size = blobs[0]!.blob.length;
  const writer = await PersistentChunkCache.open({ dir });
  for (const { hex, blob } of blobs) writer.store(hex, blob);
  await writer.close();
  // Entry i written i minutes after a base time: 0 is the least recently used.
  const base = Date.UTC(2026, 0, 1);
  for (const [i, { hex }] of blobs.entries())
    await utimes(join(dir, hex.slice(0, 4), hex), (base + i * 60_000) / 1000, (base + i * 60_000) / 1000);
  const mtimeOf = async (i: number): Promise<number> =>
    (await stat(join(dir, blobs[i]!.hex.slice(0, 4), blobs[i]!.hex))).mtimeMs;

  let now = base + 3 * 60_000 + 30_000;
  const reader = await PersistentChunkCache.open({ dir, touchIntervalMs: 60_000, now: () => now });
  t.is(reader.stats().entries, 4, 'every entry found by the scan');
  t.is(reader.stats().bytes, 4 * size);
  t.truthy(await reader.read(blobs[3]!.hex));
  t.truthy(await reader.read(blobs[0]!.hex));
  await reader.idle();
  t.is(await mtimeOf(3), base + 3 * 60_000, 'a hit 30 s after the last touch writes nothing');
  t.is(await mtimeOf(0), now, 'a hit on an entry untouched for longer refreshes its mtime');
  now += 10_000;
  t.truthy(await reader.read(blobs[0]!.hex));
  await reader.close();
  t.is(await mtimeOf(0), now - 10_000, 'touched at most once per interval');

  // Room for two: the scan keeps the two most recently used, 0 (touched) and 3.
  const smaller = await PersistentChunkCache.open({ dir, capacityBytes: 2 * size });
  await smaller.idle();
  t.deepEqual([...(await filesIn(dir)).entries.keys()].sort(), [blobs[0]!.hex, blobs[3]!.hex].sort());
  smaller.checkInvariants();
  await smaller.close();
});

test('a damaged entry is dropped and fetched again from the origin, never served', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const origin = await countedOrigin(t);
  const first = await PersistentCacheSource.open(origin, { dir });
  await restoreThrough(t, first);
  await first.close();
  const fetched = origin.fetchCount;
  const [flipped, truncated] = [...(await filesIn(dir)).entries.keys()];
  const flippedPath = join(dir, flipped!.slice(0, 4), flipped!);
  const bytes = await readFile(flippedPath);
  bytes[bytes.length - 1]! ^= 0xff;
  await writeFile(flippedPath, bytes);
  await truncate(join(dir, truncated!.slice(0, 4), truncated!), 5);

  const second = await PersistentCacheSource.open(origin, { dir });
  const cache = await restoreThrough(t, second);
  t.is(origin.fetchCount, fetched + 2, 'the two damaged chunks, and only they, fetched again');
  t.is(origin.fetches.get(flipped!), 2);
  t.is(origin.fetches.get(truncated!), 2);
  t.is(cache.stats().discardedBlobs, 1, 'the flipped blob failed verification and was dropped');
  await second.cache.close();
  t.is(second.cache.stats().discarded, 2, 'the short one was dropped when read');
  for (const hex of [flipped!, truncated!]) {
    const stored = await readFile(join(dir, hex.slice(0, 4), hex));
    t.true(stored.equals(await origin.inner.fetchChunk(hex)), `entry ${hex} holds the origin's blob again`);
  }
});

test('a bad blob from the origin itself fails the read and is not kept', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const origin = new MemorySource();
  const hex = origin.add(new Uint8Array(64 * 1024).fill(7), undefined, 'none');
  origin.blobs.get(hex)![100]! ^= 1;
  const source = await PersistentCacheSource.open(origin, { dir });
  const cache = new ChunkCache({ cacheBytes: MiB, workers: 0 });
  t.teardown(() => cache.close());
  // An uncompressed blob: the digest, which covers the bytes its CRC covers, refuses it.
  await t.throwsAsync(cache.acquire({ digestHex: hex, length: 64 * 1024, source }), {
    code: 'ERR_LR_DIGEST_MISMATCH',
  });
  t.is(origin.fetches.get(hex), 2, 'fetched once more after the first copy was dropped, not again');
  await source.close();
  t.deepEqual([...(await filesIn(dir)).entries.keys()], [], 'the bad blob is not in the cache');
});

test('processes sharing a cache directory never leave a half or wrong blob', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const child = fileURLToPath(new URL('./fixtures/cache-writer-child.js', import.meta.url));
  const count = 24;
  const size = blobOf(1).blob.length;
  const run = promisify(execFile);
  const outputs = await withTimeout(
    Promise.all(
      [1, 2, 3].map((seed) =>
        run(process.execPath, [child, dir, String(10 * size), String(count), '4', String(seed)]),
      ),
    ),
    60_000,
    'three cache writers',
  );
  const stats = outputs.map(
    (o) => JSON.parse(o.stdout) as { stored: number; hits: number; evictions: number },
  );
  t.true(
    stats.every((s) => s.stored > 0 && s.evictions > 0),
    JSON.stringify(stats),
  );
  t.true(sum(stats.map((s) => s.hits)) > 0, 'the processes read what they (and the others) stored');
  const { entries, temps } = await filesIn(dir);
  t.deepEqual(temps, [], 'no temp file left');
  t.true(entries.size > 0);
  for (const hex of entries.keys()) {
    const blob = await readFile(join(dir, hex.slice(0, 4), hex));
    t.notThrows(() => decodeChunk(blob, Buffer.from(hex, 'hex')), `entry ${hex} is a whole, right blob`);
  }
  const reopened = await PersistentChunkCache.open({ dir, capacityBytes: 10 * size });
  await reopened.idle();
  reopened.checkInvariants();
  t.true(sum((await filesIn(dir)).entries.values()) <= 10 * size, 'back within the bound once reopened');
  await reopened.close();
});

/** A tmpfs of `bytes` for the test, in a fresh directory (tests run as root). */
async function smallDisk(t: ExecutionContext, bytes: number): Promise<string> {
  const dir = join(await testDir(t), 'small');
  await mountSmallTmpfs(t, dir, bytes);
  return dir;
}

test('a full disk under the cache only stops storing: the restore still works', async (t) => {
  const dir = await smallDisk(t, 2 * MiB);
  const origin = await countedOrigin(t);
  const source = await PersistentCacheSource.open(origin, { dir });
  await restoreThrough(t, source);
  await source.close();
  const stats = source.cache.stats();
  t.true(stats.writeFailures > 0, JSON.stringify(stats));
  t.true(stats.capacityBytes <= 2 * MiB, 'the capacity came down to what the disk held');
  const { entries, temps } = await filesIn(dir);
  t.deepEqual(temps, [], 'no temp file left');
  t.is(sum(entries.values()), stats.bytes);
});

test('a directory that is not a chunk cache is refused; temp files of dead writers are removed', async (t) => {
  const dir = await testDir(t);
  await writeFile(join(dir, 'precious.txt'), 'data');
  await t.throwsAsync(PersistentChunkCache.open({ dir }), { code: 'ERR_LR_CHUNK_CACHE_DIR' });
  await t.throwsAsync(PersistentChunkCache.open({ dir: join(dir, 'precious.txt') }), {
    code: 'ERR_LR_CHUNK_CACHE_DIR',
  });
  t.throws(() => new ChunkCache({ cacheBytes: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(PersistentChunkCache.open({ dir: join(dir, 'c'), capacityBytes: 0 }), {
    instanceOf: RangeError,
  });

  const mountPoint = join(dir, 'mounted');
  await mkdir(join(mountPoint, 'lost+found'), { recursive: true });
  await (await PersistentChunkCache.open({ dir: mountPoint })).close();
  t.pass('a directory holding only lost+found (a file system of its own) counts as empty');

  const cacheDir = join(dir, 'cache');
  const { hex, blob } = blobOf(9);
  const first = await PersistentChunkCache.open({ dir: cacheDir });
  first.store(hex, blob);
  await first.close();
  const prefixDir = join(cacheDir, hex.slice(0, 4));
  const stale = `.tmp-${hex}-99999-0badf00d`;
  const fresh = `.tmp-${hex}-99998-0badf00d`;
  await writeFile(join(prefixDir, stale), 'half');
  await writeFile(join(prefixDir, fresh), 'half');
  await utimes(
    join(prefixDir, stale),
    new Date(Date.now() - 2 * 3600_000),
    new Date(Date.now() - 2 * 3600_000),
  );
  const second = await PersistentChunkCache.open({ dir: cacheDir });
  t.deepEqual((await readdir(prefixDir)).sort(), [fresh, hex].sort(), 'the stale temp file is gone');
  t.deepEqual(await second.read(hex), blob);
  await second.close();
});

test('an entry name taken by a FIFO or a symbolic link is a miss, not a hang or a redirect', async (t) => {
  const dir = join(await testDir(t), 'cache');
  const cache = await PersistentChunkCache.open({ dir });
  t.teardown(() => cache.close());
  const fifo = blobOf(1).hex;
  const link = blobOf(2);
  await mkdir(join(dir, fifo.slice(0, 4)), { recursive: true });
  execFileSync('mkfifo', [join(dir, fifo.slice(0, 4), fifo)]);
  await mkdir(join(dir, link.hex.slice(0, 4)), { recursive: true });
  const target = join(dir, 'elsewhere');
  await writeFile(target, link.blob);
  await symlink(target, join(dir, link.hex.slice(0, 4), link.hex));
  t.is(await withTimeout(cache.read(fifo), 5000, 'read of a FIFO'), undefined);
  t.is(await cache.read(link.hex), undefined);
  t.is(cache.stats().misses, 2);
});
