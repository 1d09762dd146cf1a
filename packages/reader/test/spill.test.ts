import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { allowsDirectIo, mountSmallTmpfs, randomBytes } from '@liverestore/testkit';
import test from 'ava';
import fc from 'fast-check';
import { viewsAfter, viewsUpTo } from '../src/byte-views.js';
import {
  DirectDescriptor,
  directPrefixBytes,
  directWritable,
  pageAlignedSharedBuffer,
} from '../src/direct-io.js';
import { ChunkCache, SpillStore } from '../src/index.js';
import { MemorySource, testDir } from './helpers.js';

const PAGE = 4096;

/** Arena pages holding `data` (one page per PAGE bytes, in a scrambled order), as the cache lays a chunk out. */
function arenaWith(data: Uint8Array, pageCount: number): { arena: Uint8Array; pages: Int32Array } {
  const arena = new Uint8Array(pageCount * PAGE);
  const needed = Math.max(1, Math.ceil(data.byteLength / PAGE));
  const pages = Int32Array.from({ length: needed }, (_, i) => (i * 7 + 3) % pageCount);
  for (let i = 0; i < needed; i++) arena.set(data.subarray(i * PAGE, (i + 1) * PAGE), pages[i]! * PAGE);
  return { arena, pages };
}

async function readBack(
  spill: SpillStore,
  hex: string,
  offset: number,
  count: number,
): Promise<Buffer | undefined> {
  const out = Buffer.alloc(count);
  return (await spill.read(hex, offset, out, 0, count)) ? out : undefined;
}

test('a spilled chunk reads back byte for byte, at any offset, and leaves no file behind', async (t) => {
  const dir = await testDir(t);
  const spill = SpillStore.create({ dir, capacityBytes: 64 * PAGE, pageBytes: PAGE });
  t.teardown(() => spill.close());
  t.deepEqual(await readdir(dir), [], 'the spill file is unlinked as soon as it is open');
  const data = randomBytes(1, 10 * PAGE + 123);
  const { arena, pages } = arenaWith(data, 16);
  t.true(await spill.put('aa', data.byteLength, arena, pages));
  t.true(spill.has('aa'));
  t.false(await spill.put('aa', data.byteLength, arena, pages), 'a chunk is written once');
  for (const [offset, count] of [
    [0, data.byteLength],
    [PAGE - 5, 10],
    [3 * PAGE, 2 * PAGE],
    [data.byteLength - 7, 7],
  ] as const) {
    t.deepEqual(
      await readBack(spill, 'aa', offset, count),
      Buffer.from(data.subarray(offset, offset + count)),
    );
  }
  t.is(await readBack(spill, 'bb', 0, 1), undefined, 'a chunk never spilled is not there');
  await t.throwsAsync(readBack(spill, 'aa', data.byteLength - 1, 2), { instanceOf: RangeError });
  spill.checkInvariants();
});

test('a full spill file drops the least recently read chunks, never one being read', async (t) => {
  const spill = SpillStore.create({ dir: await testDir(t), capacityBytes: 4 * PAGE, pageBytes: PAGE });
  t.teardown(() => spill.close());
  const chunk = (seed: number) => randomBytes(seed, 2 * PAGE);
  const put = (hex: string, seed: number) => {
    const { arena, pages } = arenaWith(chunk(seed), 4);
    return spill.put(hex, 2 * PAGE, arena, pages);
  };
  t.true(await put('a', 1));
  t.true(await put('b', 2));
  await readBack(spill, 'a', 0, 1); // a is now the most recently read
  t.true(await put('c', 3));
  t.deepEqual(
    ['a', 'b', 'c'].map((hex) => spill.has(hex)),
    [true, false, true],
  );
  // While a read of c is in flight, c cannot be dropped; a can.
  const reading = readBack(spill, 'c', 0, 2 * PAGE);
  t.true(await put('d', 4));
  t.deepEqual(await reading, Buffer.from(chunk(3)));
  t.deepEqual(
    ['a', 'c', 'd'].map((hex) => spill.has(hex)),
    [false, true, true],
  );
  t.is(spill.stats().evictions, 2);
  spill.checkInvariants();
});

test('a chunk larger than the spill file is not spilled, and nothing is lost', async (t) => {
  const spill = SpillStore.create({ dir: await testDir(t), capacityBytes: 2 * PAGE, pageBytes: PAGE });
  t.teardown(() => spill.close());
  const { arena, pages } = arenaWith(randomBytes(5, 3 * PAGE), 4);
  t.false(await spill.put('big', 3 * PAGE, arena, pages));
  t.false(spill.has('big'));
  spill.checkInvariants();
});

test('a spill directory that cannot hold a file fails with ERR_LR_SPILL_DIR', (t) => {
  t.throws(() => SpillStore.create({ dir: '/nonexistent/spill', pageBytes: PAGE }), {
    code: 'ERR_LR_SPILL_DIR',
  });
  t.throws(() => SpillStore.create({ dir: '/tmp', capacityBytes: 100, pageBytes: PAGE }), {
    instanceOf: RangeError,
  });
});

/** A tmpfs of `bytes` for the test, in a fresh directory (tests run as root). */
async function smallDisk(t: import('ava').ExecutionContext, bytes: number): Promise<string> {
  const dir = join(await testDir(t), 'small');
  await mountSmallTmpfs(t, dir, bytes);
  return dir;
}

test('a full disk under the spill file only stops spilling: the chunk stays readable from memory', async (t) => {
  const dir = await smallDisk(t, 8 * PAGE);
  const spill = SpillStore.create({ dir, capacityBytes: 64 * PAGE, pageBytes: PAGE });
  t.teardown(() => spill.close());
  const { arena, pages } = arenaWith(randomBytes(6, 6 * PAGE), 8);
  t.true(await spill.put('fits', 6 * PAGE, arena, pages));
  t.false(await spill.put('too-much', 6 * PAGE, arena, pages), 'ENOSPC is a chunk not spilled, not an error');
  t.is(spill.stats().writeFailures, 1);
  t.false(spill.has('too-much'));
  t.deepEqual(await readBack(spill, 'fits', 0, 6 * PAGE), Buffer.from(randomBytes(6, 6 * PAGE)));
  spill.checkInvariants();
});

// ------------------------------------------------------------------ ChunkCache + spill

interface CacheWithSpill {
  readonly cache: ChunkCache;
  readonly spill: SpillStore;
  readonly source: MemorySource;
  readonly chunks: readonly { hex: string; data: Uint8Array }[];
}

async function cacheWithSpill(
  t: import('ava').ExecutionContext,
  cachePages: number,
  spillPages: number,
  chunkPages: readonly number[],
): Promise<CacheWithSpill> {
  const spill = SpillStore.create({
    dir: await testDir(t),
    capacityBytes: spillPages * PAGE,
    pageBytes: PAGE,
  });
  const cache = new ChunkCache({ cacheBytes: cachePages * PAGE, pageBytes: PAGE, workers: 0, spill });
  t.teardown(() => cache.close());
  const source = new MemorySource();
  const chunks = chunkPages.map((pages, i) => {
    const data = randomBytes(100 + i, pages * PAGE - (i % 3) * 100);
    return { hex: source.add(data), data };
  });
  return { cache, spill, source, chunks };
}

/** Reads `count` bytes at `offset` of chunk `c` the way CachedChunkReader does: the spill file first, else a lease. */
async function readThrough(
  { cache, source, chunks }: CacheWithSpill,
  c: number,
  offset: number,
  count: number,
): Promise<Buffer> {
  const { hex, data } = chunks[c]!;
  const out = Buffer.alloc(count);
  if (await cache.readSpilled(hex, data.byteLength, offset, out, 0, count)) return out;
  const lease = await cache.acquire({ digestHex: hex, length: data.byteLength, source });
  try {
    cache.copyOut(lease, offset, out, 0, count);
  } finally {
    cache.release(lease);
  }
  return out;
}

test('a chunk evicted from memory comes back from the spill file: each chunk is fetched once', async (t) => {
  // 8 chunks of 4 pages through a cache of 8 pages: without the spill every pass refetches.
  const env = await cacheWithSpill(t, 8, 64, [4, 4, 4, 4, 4, 4, 4, 4]);
  for (let pass = 0; pass < 3; pass++) {
    for (let c = 0; c < env.chunks.length; c++) {
      const { data } = env.chunks[c]!;
      t.deepEqual(await readThrough(env, c, 0, data.byteLength), Buffer.from(data));
    }
  }
  for (const { hex } of env.chunks) t.is(env.source.fetches.get(hex), 1, `chunk ${hex} fetched once`);
  const stats = env.cache.stats();
  t.is(stats.misses, 8);
  t.true(stats.spillReads > 0);
  t.true(stats.evictions > 0);
  env.cache.checkInvariants();
});

test('a full cache with nothing to evict writes only its least recently used sixteenth ahead', async (t) => {
  // 32 one-page chunks fill a cache of 32 pages; no read needs room, so every chunk written
  // now is written ahead of need, and the guest may never let it be evicted.
  const env = await cacheWithSpill(
    t,
    32,
    64,
    Array.from({ length: 32 }, () => 1),
  );
  for (let c = 0; c < env.chunks.length; c++) await readThrough(env, c, 0, 1);
  // Each write that ends starts the next one it needs, synchronously: none in flight means done.
  while (env.spill.writesInFlight > 0) await new Promise((resolve) => setImmediate(resolve));
  t.is(env.cache.stats().evictions, 0);
  t.is(env.spill.stats().writes, 2, 'a sixteenth of 32 pages');
  env.cache.checkInvariants();
});

test('a chunk that needs room starts the spill writes it needs, not a write of every chunk in the cache', async (t) => {
  // 32 one-page chunks fill the cache, none written yet but the writes ahead; a 33rd then
  // needs one page. The eviction scan used to start a write for every unwritten chunk it
  // passed (30 of them) before it found one it could drop.
  const env = await cacheWithSpill(
    t,
    32,
    64,
    Array.from({ length: 33 }, () => 1),
  );
  for (let c = 0; c < 32; c++) await readThrough(env, c, 0, 1);
  t.deepEqual(await readThrough(env, 32, 0, 100), Buffer.from(env.chunks[32]!.data.subarray(0, 100)));
  while (env.spill.writesInFlight > 0) await new Promise((resolve) => setImmediate(resolve));
  const { writes } = env.spill.stats();
  t.is(env.cache.stats().evictions, 1);
  t.true(
    writes <= 4,
    `${writes} spill writes: the writes ahead (a sixteenth of 32 pages), then one for room`,
  );
  for (const { hex } of env.chunks) t.is(env.source.fetches.get(hex), 1);
  env.cache.checkInvariants();
});

test('allocations waiting on a full cache start the spill writes they all need at once, not one after another', async (t) => {
  // 32 one-page chunks fill the cache and the writes ahead end; then 16 new chunks are
  // asked for at once. The first two take the pages written ahead; the 14 that wait each
  // need a write. Only the queue's head used to start one, so they were written in turns.
  const env = await cacheWithSpill(
    t,
    32,
    64,
    Array.from({ length: 48 }, () => 1),
  );
  for (let c = 0; c < 32; c++) await readThrough(env, c, 0, 1);
  while (env.spill.writesInFlight > 0) await new Promise((resolve) => setImmediate(resolve));
  // From here each write takes 20 event-loop turns (a slow disk), so writes started
  // together overlap and writes started in turn do not.
  const put = env.spill.put.bind(env.spill);
  let inFlight = 0;
  let mostInFlight = 0;
  env.spill.put = async (...args) => {
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
    try {
      return await put(...args);
    } finally {
      inFlight--;
    }
  };
  const got = await Promise.all(env.chunks.slice(32).map((_, i) => readThrough(env, 32 + i, 0, 100)));
  for (let i = 0; i < got.length; i++)
    t.deepEqual(got[i], Buffer.from(env.chunks[32 + i]!.data.subarray(0, 100)));
  t.true(mostInFlight >= 14, `at most ${mostInFlight} spill writes in flight for 14 waiting allocations`);
  for (const { hex } of env.chunks) t.is(env.source.fetches.get(hex), 1);
  env.cache.checkInvariants();
});

test('acquire of a spilled chunk loads it from the spill file, not from the source', async (t) => {
  const env = await cacheWithSpill(t, 4, 64, [4, 4, 4]);
  for (let c = 0; c < 3; c++) await readThrough(env, c, 0, 1);
  const { hex, data } = env.chunks[0]!;
  const lease = await env.cache.acquire({ digestHex: hex, length: data.byteLength, source: env.source });
  const out = Buffer.alloc(data.byteLength);
  env.cache.copyOut(lease, 0, out, 0, out.length);
  env.cache.release(lease);
  t.deepEqual(out, Buffer.from(data));
  t.is(env.source.fetches.get(hex), 1);
  t.is(env.cache.stats().spillLoads, 1);
  env.cache.checkInvariants();
});

test('random reads through a cache with a spill file: right bytes, no chunk fetched twice while the spill holds it', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        cachePages: fc.integer({ min: 4, max: 12 }),
        spillPages: fc.integer({ min: 4, max: 48 }),
        chunkPages: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 8 }),
        reads: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.boolean()), {
          minLength: 1,
          maxLength: 40,
        }),
      }),
      async ({ cachePages, spillPages, chunkPages, reads }) => {
        const env = await cacheWithSpill(t, cachePages, spillPages, chunkPages);
        const spillHoldsAll = spillPages >= chunkPages.reduce((a, b) => a + b, 0);
        const batch: Promise<void>[] = [];
        for (const [c0, o0, n0, concurrent] of reads) {
          const c = c0 % env.chunks.length;
          const { data } = env.chunks[c]!;
          const offset = o0 % data.byteLength;
          const count = 1 + (n0 % (data.byteLength - offset));
          const read = readThrough(env, c, offset, count).then((got) => {
            if (!got.equals(data.subarray(offset, offset + count)))
              throw new Error(`wrong bytes of chunk ${c}`);
          });
          batch.push(read);
          if (!concurrent) await Promise.all(batch.splice(0));
          env.cache.checkInvariants();
        }
        await Promise.all(batch);
        env.cache.checkInvariants();
        if (spillHoldsAll) {
          for (const { hex } of env.chunks) {
            if ((env.source.fetches.get(hex) ?? 0) > 1) throw new Error(`chunk ${hex} fetched twice`);
          }
        }
        await env.cache.close();
      },
    ),
    { numRuns: 60 },
  );
  t.pass();
});

test('the spill store must use the cache page size', async (t) => {
  const spill = SpillStore.create({ dir: await testDir(t), pageBytes: 8192, capacityBytes: 8192 * 4 });
  t.teardown(() => spill.close());
  t.throws(() => new ChunkCache({ cacheBytes: 16 * PAGE, pageBytes: PAGE, workers: 0, spill }), {
    instanceOf: RangeError,
  });
});

test('spilled chunks are written with O_DIRECT from the page-aligned arena; from unaligned memory or with directWrites: false through the page cache, all read back right', async (t) => {
  const PAGE64 = 64 * 1024;
  const run = async (cacheBytes: number, directWrites: boolean) => {
    const spill = SpillStore.create({
      dir: await testDir(t),
      capacityBytes: 64 * PAGE64,
      pageBytes: PAGE64,
      directWrites,
    });
    const cache = new ChunkCache({ cacheBytes, pageBytes: PAGE64, workers: 0, spill });
    t.teardown(() => cache.close());
    const source = new MemorySource();
    // Six chunks of 2.5 pages through a cache of 8 pages (or one byte short of a 64 KiB multiple): each pass evicts.
    const chunks = Array.from({ length: 6 }, (_, i) => {
      const data = randomBytes(200 + i, 2 * PAGE64 + PAGE64 / 2 + i);
      return { hex: source.add(data), data };
    });
    for (let pass = 0; pass < 2; pass++)
      for (const { hex, data } of chunks) {
        const out = Buffer.alloc(data.byteLength);
        if (!(await cache.readSpilled(hex, data.byteLength, 0, out, 0, out.byteLength))) {
          const lease = await cache.acquire({ digestHex: hex, length: data.byteLength, source });
          cache.copyOut(lease, 0, out, 0, out.byteLength);
          cache.release(lease);
        }
        t.deepEqual(out, Buffer.from(data));
      }
    for (const { hex } of chunks) t.is(source.fetches.get(hex), 1, 'each chunk fetched once');
    return cache.stats().spill!;
  };
  const aligned = await run(8 * PAGE64, true);
  t.true(aligned.writes > 0);
  t.true(aligned.directBytes > 0, 'the cache arena (a WebAssembly.Memory) is page-aligned: O_DIRECT writes');
  t.is(aligned.writeFailures, 0);
  const off = await run(8 * PAGE64, false);
  t.true(off.writes > 0);
  t.is(off.directBytes, 0, 'directWrites: false');
});

test('a spill write from memory O_DIRECT refuses goes through the page cache, and reads back', async (t) => {
  const PAGE64 = 64 * 1024;
  const spill = SpillStore.create({ dir: await testDir(t), capacityBytes: 8 * PAGE64, pageBytes: PAGE64 });
  t.teardown(() => spill.close());
  // Memory 16 bytes past a page boundary: O_DIRECT answers EINVAL. (A plain
  // SharedArrayBuffer is only sometimes misaligned: the allocator decides.)
  const arena = new Uint8Array(pageAlignedSharedBuffer(5 * PAGE64).buffer, 16, 4 * PAGE64);
  const data = randomBytes(300, 2 * PAGE64 + 10);
  arena.set(data.subarray(0, PAGE64), 2 * PAGE64);
  arena.set(data.subarray(PAGE64, 2 * PAGE64), 0);
  arena.set(data.subarray(2 * PAGE64), 3 * PAGE64);
  t.true(await spill.put('ab'.repeat(32), data.byteLength, arena, Int32Array.of(2, 0, 3)));
  t.is(spill.stats().directBytes, 0);
  t.deepEqual(await readBack(spill, 'ab'.repeat(32), 0, data.byteLength), Buffer.from(data));
});

test('directWritable: only whole pages of page-aligned shared memory', (t) => {
  const aligned = pageAlignedSharedBuffer(2 * 64 * 1024);
  t.true(aligned.aligned);
  t.true(directWritable(new Uint8Array(aligned.buffer, 4096, 8192)));
  t.false(directWritable(new Uint8Array(aligned.buffer, 16, 4096)), 'not on a page boundary');
  t.false(directWritable(new Uint8Array(aligned.buffer, 0, 4000)), 'not a whole page');
  t.false(
    directWritable(new Uint8Array(new SharedArrayBuffer(8192))),
    'a plain SharedArrayBuffer: aligned only by chance',
  );
  t.false(directWritable(Buffer.alloc(8192)));
  t.false(pageAlignedSharedBuffer(1000).aligned);
});

test('viewsUpTo and viewsAfter cut views taken back to back without copying', (t) => {
  const views = [Buffer.from([1, 2, 3]), Buffer.from([4]), Buffer.from([5, 6])];
  const bytes = (vs: Uint8Array[]) => vs.flatMap((v) => [...v]);
  t.deepEqual(bytes(viewsUpTo(views, 4)), [1, 2, 3, 4]);
  t.deepEqual(bytes(viewsUpTo(views, 5)), [1, 2, 3, 4, 5]);
  t.deepEqual(bytes(viewsUpTo(views, 99)), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(viewsUpTo(views, 0), []);
  t.deepEqual(bytes(viewsAfter(views, 2)), [3, 4, 5, 6]);
  t.deepEqual(bytes(viewsAfter(views, 4)), [5, 6]);
  t.deepEqual(viewsAfter(views, 6), []);
  t.is(viewsAfter(views, 0)[0], views[0], 'views are not copied');
  t.is(viewsAfter(views, 2)[0]!.buffer, views[0]!.buffer);
});

test('directPrefixBytes: whole alignment units from an aligned start, none from another', (t) => {
  t.is(directPrefixBytes(8192, 12_345), 12_288);
  t.is(directPrefixBytes(0, 4095), 0);
  t.is(directPrefixBytes(100, 1 << 20), 0);
});

test('DirectDescriptor.writeAll writes more views than one writev takes, in order', async (t) => {
  const dir = await testDir(t);
  const path = join(dir, 'direct-all');
  await writeFile(path, Buffer.alloc(0));
  const direct = DirectDescriptor.open(path);
  if (direct === undefined) {
    t.false(await allowsDirectIo(dir), 'open answers undefined only where O_DIRECT is refused');
    return;
  }
  t.teardown(() => direct.close());
  // 1,100 pages of page-aligned memory, out of order: more than IOV_MAX (1,024) views.
  const memory = new Uint8Array(pageAlignedSharedBuffer(1152 * 4096).buffer);
  memory.set(randomBytes(77, memory.byteLength));
  const views = Array.from({ length: 1100 }, (_, i) => {
    const page = (i * 7) % 1152;
    return memory.subarray(page * 4096, (page + 1) * 4096);
  });
  t.is(await direct.writeAll(views, 4096), 1100 * 4096);
  t.true((await readFile(path)).subarray(4096).equals(Buffer.concat(views)));
});
