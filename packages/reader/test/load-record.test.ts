/*
 * ChunkCacheOptions.onLoad: one record per load when it ends, its phases in order and
 * adding up, where the bytes came from, whether it succeeded, and its urgency at the start
 * and at the end.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { randomBytes } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { ChunkCache, type ChunkCacheOptions, type ChunkLoadRecord, SpillStore } from '../src/index.js';
import { MemorySource, testDir } from './helpers.js';

const PAGE = 4096;

function phasesAddUp(record: ChunkLoadRecord): boolean {
  const phases = [record.memoryWaitMs, record.blobMs, record.decodeWaitMs, record.decodeMs];
  const sum = phases.reduce((a, b) => a + b, 0);
  return (
    phases.every((ms) => ms >= 0) &&
    sum <= record.totalMs + 1e-6 &&
    record.pagesWaitMs >= 0 &&
    record.pagesWaitMs <= record.memoryWaitMs &&
    record.urgentWaitMs <= record.totalMs
  );
}

/** A cache of `PAGE`-sized pages (64 of them unless `options` say otherwise) whose load records land in `records`. */
function tracedCache(
  t: ExecutionContext,
  options: ChunkCacheOptions,
): { cache: ChunkCache; records: ChunkLoadRecord[] } {
  const records: ChunkLoadRecord[] = [];
  const cache = new ChunkCache({
    cacheBytes: 64 * PAGE,
    pageBytes: PAGE,
    ...options,
    onLoad: (r) => records.push(r),
  });
  t.teardown(() => cache.close());
  return { cache, records };
}

test('a fetched load: from the source, ok, urgent, phases adding up to at most its total', async (t) => {
  const { cache, records } = tracedCache(t, { workers: 1 });
  const source = new MemorySource();
  const data = randomBytes(1, 10 * PAGE);
  const hex = source.add(data);
  source.delayNext(hex);
  const lease = cache.acquire({ digestHex: hex, length: data.byteLength, source });
  while (source.pending.length === 0) await nextTurn();
  t.is(records.length, 0, 'no record before the load ends');
  source.pending[0]!.complete();
  cache.release(await lease);
  t.is(records.length, 1);
  const [record] = records as [ChunkLoadRecord];
  t.like(record, {
    digestHex: hex,
    bytes: data.byteLength,
    from: 'source',
    ok: true,
    urgentAtStart: true,
    urgent: true,
  });
  t.true(record.decodeMs > 0, 'a decode on a thread takes time');
  t.true(phasesAddUp(record), JSON.stringify(record));
  t.is(record.urgentWaitMs, record.totalMs, 'urgent from its start');
});

test('a failed load is recorded as failed; a background load joined by a reader ends urgent', async (t) => {
  const { cache, records } = tracedCache(t, { workers: 0 });
  const source = new MemorySource();
  const failing = source.add(randomBytes(2, PAGE));
  source.failNext(failing);
  await t.throwsAsync(cache.acquire({ digestHex: failing, length: PAGE, source }));
  t.like(records[0], { digestHex: failing, ok: false });

  const data = randomBytes(3, 2 * PAGE);
  const hex = source.add(data);
  source.delayNext(hex);
  const background = cache.acquire({ digestHex: hex, length: data.byteLength, source, background: true });
  while (source.pending.length === 0) await nextTurn();
  // The reader joins while the fetch is on its way: it waits from then on, not from the start.
  const beforeJoin = performance.now();
  const urgent = cache.acquire({ digestHex: hex, length: data.byteLength, source });
  source.pending[0]!.complete();
  cache.release(await background);
  cache.release(await urgent);
  const afterEnd = performance.now();
  t.like(records[1], { digestHex: hex, ok: true, urgentAtStart: false, urgent: true });
  t.true(records[1]!.urgentWaitMs > 0);
  t.true(records[1]!.urgentWaitMs <= afterEnd - beforeJoin);
  t.true(records[1]!.urgentWaitMs < records[1]!.totalMs);
  t.true(phasesAddUp(records[1]!));
});

test('a load that stays in the background has no urgent wait', async (t) => {
  const { cache, records } = tracedCache(t, { workers: 0 });
  const source = new MemorySource();
  const data = randomBytes(6, PAGE);
  const hex = source.add(data);
  cache.release(await cache.acquire({ digestHex: hex, length: data.byteLength, source, background: true }));
  t.like(records[0], { urgentAtStart: false, urgent: false, urgentWaitMs: 0 });
  t.true(phasesAddUp(records[0]!));
});

test('a chunk read back from the spill file is recorded as from the spill, with no decode', async (t) => {
  const dir = await testDir(t);
  const spill = SpillStore.create({ dir, capacityBytes: 64 * PAGE, pageBytes: PAGE });
  // Room for one 4-page chunk: the second evicts the first, which comes back from the spill file.
  const { cache, records } = tracedCache(t, { cacheBytes: 4 * PAGE, workers: 0, spill });
  const source = new MemorySource();
  const chunks = [randomBytes(4, 4 * PAGE), randomBytes(5, 4 * PAGE)].map((data) => ({
    data,
    hex: source.add(data),
  }));
  for (const { data, hex } of [...chunks, chunks[0]!])
    cache.release(await cache.acquire({ digestHex: hex, length: data.byteLength, source }));
  t.is(records.length, 3);
  t.like(records[2], { digestHex: chunks[0]!.hex, from: 'spill', ok: true, decodeMs: 0, decodeWaitMs: 0 });
  t.true(phasesAddUp(records[2]!));
});
