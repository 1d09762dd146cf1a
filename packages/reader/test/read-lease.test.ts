/*
 * Read leases (CachedChunkReader.leaseAt / tryLeaseAtSync): the bytes of a read lent as
 * views on the cache's pinned pages. They must equal readAt's bytes, drop every pin on
 * release (also when a chunk fails or the read is aborted), never let lent chunks hold
 * more than half the cache (beyond that they copy), and be released only once.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { toHex } from '@liverestore/format';
import { type ImageSpec, imageBytes, vmImageSet } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  type CachedChunkReader,
  ChunkCache,
  LocalChunkSource,
  openSnapshot,
  type ReadLease,
} from '../src/index.js';
import { chunkCacheInternals, MAX_LENT_CACHE_FRACTION } from '../src/internal.js';
import { backupInputs, chunkPath, KiB, MiB, prng, testDir } from './helpers.js';

const CHUNK = 256 * KiB;

interface Store {
  readonly storeDir: string;
  readonly spec: ImageSpec;
  readonly cache: ChunkCache;
  readonly reader: CachedChunkReader;
}

/** A 6 MiB (+1000 bytes) image in 256 KiB chunks behind a fresh 4 MiB cache. */
async function openStore(t: ExecutionContext): Promise<Store> {
  const dir = await testDir(t);
  const spec = vmImageSet(31, { drives: 1, sizeBytes: 6 * MiB + 1000 })[0]!.spec;
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec }], { chunkSizeBytes: CHUNK });
  const storeDir = join(dir, 'store');
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({
    source: await LocalChunkSource.open(storeDir),
    snapshot: 'vm/100',
    cache,
  });
  const reader = await snapshot.openArchive('drive-scsi0', { readaheadChunks: 0 });
  return { storeDir, spec, cache, reader };
}

function bytesOf(lease: ReadLease): Buffer {
  return Buffer.concat(lease.views);
}

/** True when a view lies on the cache's shared arena (lent, not copied). */
function onArena(cache: ChunkCache, view: Buffer): boolean {
  return view.buffer === chunkCacheInternals(cache).memory.arena;
}

test('leases equal readAt at random ranges; chunks in memory are lent as views; release drops every pin', async (t) => {
  const { spec, cache, reader } = await openStore(t);
  const data = [...Array(reader.index.chunkCount).keys()].find((i) => !reader.isZeroChunk(i))!;
  t.is(
    reader.tryLeaseAtSync(data * CHUNK, 10, undefined),
    undefined,
    'not in memory: no lease without waiting',
  );
  t.is(chunkCacheInternals(cache).table.totalPins(), 0);
  const random = prng(7);
  let lent = 0;
  for (let k = 0; k < 200; k++) {
    const offset = Math.floor(random() * reader.size);
    const length = Math.min(reader.size - offset, Math.floor(random() * 3 * CHUNK));
    const lease = await reader.leaseAt(offset, length);
    t.is(lease.byteLength, length);
    t.true(bytesOf(lease).equals(imageBytes(spec, offset, length)), `bytes at ${offset} + ${length}`);
    if (lease.views.some((v) => onArena(cache, v))) lent++;
    lease.release();
    t.is(chunkCacheInternals(cache).table.totalPins(), 0);
    t.is(cache.stats().lentBytes, 0);
    cache.checkInvariants();
  }
  t.true(lent > 100, `${lent} of 200 leases were lent`);
  // The synchronous form answers from memory, the same bytes.
  const warm = await reader.leaseAt(CHUNK + 10, 2 * CHUNK);
  const sync = reader.tryLeaseAtSync(CHUNK + 10, 2 * CHUNK, undefined);
  t.truthy(sync);
  t.true(bytesOf(sync!).equals(bytesOf(warm)));
  sync!.release();
  warm.release();
  t.is(chunkCacheInternals(cache).table.totalPins(), 0);
});

test('a lease of chunks that are not in a spill file takes no scratch buffer', async (t) => {
  const { cache, reader } = await openStore(t);
  const taken: number[] = [];
  const scratch = {
    take: (length: number): Buffer => {
      taken.push(length);
      return Buffer.allocUnsafe(length);
    },
    give: (): void => {},
  };
  for (const offset of [0, CHUNK, 0, 3 * CHUNK + 7]) {
    const lease = await reader.leaseAt(offset, CHUNK, undefined, scratch);
    lease.release();
  }
  t.deepEqual(taken, [], 'every part was lent: no buffer was taken');
  t.is(chunkCacheInternals(cache).table.totalPins(), 0);
});

test('a lease is released once: a second release throws and leaves the pins alone', async (t) => {
  const { cache, reader } = await openStore(t);
  const a = await reader.leaseAt(0, 4096);
  const b = await reader.leaseAt(100, 4096); // the same chunk: two pins on one slot
  a.release();
  t.throws(() => a.release(), { message: /released twice/ });
  t.is(chunkCacheInternals(cache).table.totalPins(), 1, "b's pin is still there");
  b.release();
  t.is(chunkCacheInternals(cache).table.totalPins(), 0);
});

test('lent chunks never hold more than half the cache; beyond, leases copy and hold only their bytes', async (t) => {
  const { spec, cache, reader } = await openStore(t);
  const limit = cache.capacityBytes * MAX_LENT_CACHE_FRACTION;
  const held: ReadLease[] = [];
  let copied = 0;
  for (let i = 0; i < reader.index.chunkCount - 1; i++) {
    if (reader.isZeroChunk(i)) continue;
    const offset = i * CHUNK + 1000;
    const lease = await reader.leaseAt(offset, 5000);
    t.true(bytesOf(lease).equals(imageBytes(spec, offset, 5000)));
    if (lease.views.some((v) => onArena(cache, v)))
      t.is(lease.heldBytes, CHUNK, 'a lent view holds its chunk');
    else {
      copied++;
      t.is(lease.heldBytes, 5000, 'a copied part holds its own bytes only');
    }
    held.push(lease);
    t.true(cache.stats().lentBytes <= limit, `${cache.stats().lentBytes} lent, limit ${limit}`);
    cache.checkInvariants();
  }
  t.true(cache.stats().lentBytes > limit - CHUNK, 'the lending share was used');
  t.true(copied > 0, 'leases past the share were copies');
  for (const lease of held) lease.release();
  t.is(chunkCacheInternals(cache).table.totalPins(), 0);
  t.is(cache.stats().lentBytes, 0);
  // Returned: the share is free again.
  const again = await reader.leaseAt(CHUNK * 3, 100);
  t.true(again.views.some((v) => onArena(cache, v)));
  again.release();
});

test('a lease whose chunk is missing fails and releases the chunks it got; an aborted one holds nothing', async (t) => {
  const { storeDir, cache, reader } = await openStore(t);
  const index = reader.index;
  let missing = -1;
  for (let i = 1; i < index.chunkCount - 1 && missing < 0; i++) {
    const hex = toHex(index.digestAt(i));
    const unique =
      [...Array(index.chunkCount).keys()].filter((j) => toHex(index.digestAt(j)) === hex).length === 1;
    if (unique && !reader.isZeroChunk(i) && !reader.isZeroChunk(i - 1)) missing = i;
  }
  t.true(missing > 0, 'the image has a unique data chunk after a data chunk');
  await rm(chunkPath(storeDir, toHex(index.digestAt(missing))));
  await t.throwsAsync(reader.leaseAt((missing - 1) * CHUNK, 2 * CHUNK), { code: 'ERR_LR_CHUNK_MISSING' });
  t.is(chunkCacheInternals(cache).table.totalPins(), 0, 'the chunk before the missing one was released');
  t.is(cache.stats().lentBytes, 0);

  const controller = new AbortController();
  const aborted = reader.leaseAt(CHUNK * (missing + 1), CHUNK, controller.signal);
  controller.abort(new Error('client went away'));
  await t.throwsAsync(aborted, { message: 'client went away' });
  while (cache.stats().inFlight > 0) await new Promise((resolve) => setImmediate(resolve));
  t.is(chunkCacheInternals(cache).table.totalPins(), 0, 'the load finished with nobody pinning it');
  cache.checkInvariants();
});

test("a chunk's pages are allocated in ascending order: on a fresh cache a whole-chunk lease is one view", async (t) => {
  const { spec, cache, reader } = await openStore(t);
  const data = [...Array(reader.index.chunkCount - 1).keys()].filter((i) => !reader.isZeroChunk(i));
  for (const i of data.slice(0, 4)) {
    const lease = await reader.leaseAt(i * CHUNK, CHUNK);
    t.is(lease.views.length, 1, `chunk ${i}`);
    t.true(onArena(cache, lease.views[0]!));
    t.true(lease.views[0]!.equals(imageBytes(spec, i * CHUNK, CHUNK)));
    lease.release();
  }
});
