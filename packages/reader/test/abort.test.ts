/*
 * Cancellation: an aborted read ends at once without cancelling the fetch another reader
 * waits for; aborting every waiter leaves the cache consistent; a destroyed stream stops
 * reading; closing the cache rejects whatever still waits.
 */
import { getEventListeners } from 'node:events';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { type ImageSpec, imageBytes, randomBytes } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  type CachedChunkReader,
  ChunkCache,
  exportArchive,
  LocalChunkSource,
  openRemoteArchive,
  openSnapshot,
  type Snapshot,
} from '../src/index.js';
import { chunkCacheInternals } from '../src/internal.js';
import type { RemoteReaderData } from './fixtures/remote-reader.js';
import {
  backupInputs,
  CountingSource,
  KiB,
  MemorySource,
  MiB,
  promiseState,
  sleep,
  testDir,
  withTimeout,
} from './helpers.js';

const CHUNK = 256 * KiB;
const SPEC: ImageSpec = { sizeBytes: 8 * MiB + 123, seed: 5, mix: { text: 0.5, random: 0.5 } };

interface Opened {
  readonly source: CountingSource;
  readonly cache: ChunkCache;
  readonly snapshot: Snapshot;
  readonly reader: CachedChunkReader;
}

async function open(t: ExecutionContext, cacheBytes = 4 * MiB, readaheadChunks?: number): Promise<Opened> {
  const dir = await testDir(t);
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: SPEC }], { chunkSizeBytes: CHUNK });
  const source = new CountingSource(await LocalChunkSource.open(join(dir, 'store')));
  const cache = new ChunkCache({ cacheBytes, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: 'vm/100', cache });
  const reader = await snapshot.openArchive(
    'drive-scsi0',
    readaheadChunks === undefined ? {} : { readaheadChunks },
  );
  return { source, cache, snapshot, reader };
}

function assertNoPins(t: ExecutionContext, cache: ChunkCache): void {
  t.is(chunkCacheInternals(cache).table.totalPins(), 0, 'no slot is still pinned');
}

async function waitFor(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

test('aborting one of two readers waiting for a chunk rejects it at once; the other gets the data from the same fetch', async (t) => {
  const { source, cache, reader, snapshot } = await open(t);
  const other = await snapshot.openArchive('drive-scsi0');
  source.hold();
  const offset = 3 * CHUNK + 100;
  const controller = new AbortController();
  const a = Buffer.alloc(1000);
  const b = Buffer.alloc(1000);
  const readA = reader.readAt(a, offset, controller.signal);
  const readB = other.readAt(b, offset);
  await waitFor(() => source.waiting === 1, 'the fetch to be held');
  const reason = new Error('client went away');
  controller.abort(reason);
  t.is(await promiseState(readA), 'rejected', 'the aborted read ended while the fetch is still held');
  t.is(await readA.catch((err: unknown) => err), reason);
  t.is(await promiseState(readB), 'pending');
  source.release();
  t.is(await withTimeout(readB, 5000, 'the other reader'), 1000);
  t.true(b.equals(imageBytes(SPEC, offset, 1000)));
  t.is(source.fetchCount, 1, 'one fetch served both readers');
  t.is(cache.stats().dedupJoins, 1);
  assertNoPins(t, cache);
  cache.checkInvariants();
});

test('an abort without a reason rejects with an AbortError', async (t) => {
  const { source, reader } = await open(t);
  source.hold();
  const controller = new AbortController();
  const read = reader.readAt(Buffer.alloc(10), 5 * CHUNK, controller.signal);
  await waitFor(() => source.waiting === 1, 'the fetch to be held');
  controller.abort();
  const err = await withTimeout(
    read.then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    ),
    1000,
    'aborted read',
  );
  t.true(err?.name === 'AbortError' || err?.code === 'ERR_LR_ABORTED', String(err));
  source.release();
});

test('aborting every waiter leaves the cache consistent, and later reads work', async (t) => {
  const { source, cache, reader } = await open(t, 2 * CHUNK);
  source.hold();
  const controller = new AbortController();
  // Three readers of one chunk, a read over four chunks (more than the cache holds, so
  // some of its loads wait for memory), all aborted.
  const reads = [
    reader.readAt(Buffer.alloc(100), CHUNK + 1, controller.signal),
    reader.readAt(Buffer.alloc(100), CHUNK + 50, controller.signal),
    reader.readAt(Buffer.alloc(CHUNK), CHUNK, controller.signal),
    reader.readAt(Buffer.alloc(4 * CHUNK), 6 * CHUNK + 7, controller.signal),
  ];
  await waitFor(() => source.waiting >= 2, 'fetches to be held');
  t.true(cache.stats().memoryWaits > 0, 'some loads wait for memory');
  controller.abort(new Error('stop'));
  for (const read of reads) t.is(await promiseState(read), 'rejected');
  cache.checkInvariants();
  source.release();
  // The loads nobody waits for any more still finish (a fetch is never cancelled by an abort).
  await waitFor(() => cache.stats().inFlight === 0, 'loads to finish');
  cache.checkInvariants();
  assertNoPins(t, cache);
  t.is(cache.stats().failures, 0);
  for (const offset of [CHUNK + 1, 6 * CHUNK + 7, SPEC.sizeBytes - 5000]) {
    const buffer = Buffer.alloc(5000);
    t.is(await withTimeout(reader.readAt(buffer, offset), 5000, 'read after the aborts'), 5000);
    t.true(buffer.equals(imageBytes(SPEC, offset, 5000)));
  }
  cache.checkInvariants();
});

test('a waiter aborted while its load waits for memory does not stop the load or the queue', async (t) => {
  const source = new MemorySource();
  const page = 4096;
  const data = [0, 1, 2].map((i) => randomBytes(40 + i, page));
  const [h0, h1, h2] = data.map((d) => source.add(d)) as [string, string, string];
  const cache = new ChunkCache({ cacheBytes: page, pageBytes: page, workers: 0 });
  t.teardown(() => cache.close());
  const request = (digestHex: string) => ({ digestHex, length: page, source });
  const pinned = await cache.acquire(request(h0));
  const controller = new AbortController();
  const waitingA = cache.acquire(request(h1), controller.signal);
  const waitingB = cache.acquire(request(h1));
  const waitingC = cache.acquire(request(h2));
  for (const waiting of [waitingA, waitingB, waitingC]) waiting.catch(() => undefined); // ends with the test
  t.is(await promiseState(waitingB), 'pending');
  t.is(cache.stats().memoryWaits, 2);
  controller.abort(new Error('gone'));
  t.is(await promiseState(waitingA), 'rejected');
  t.is(await promiseState(waitingB), 'pending');
  cache.release(pinned);
  const leaseB = await withTimeout(waitingB, 2000, 'waiter B after the release');
  const copy = new Uint8Array(page);
  cache.copyOut(leaseB, 0, copy, 0, page);
  t.true(Buffer.from(copy).equals(data[1]!));
  cache.release(leaseB);
  const leaseC = await withTimeout(waitingC, 2000, 'waiter C after B released');
  cache.release(leaseC);
  t.is(source.fetches.get(h1), 1);
  cache.checkInvariants();
  assertNoPins(t, cache);
});

test('a destroyed read stream stops reading', async (t) => {
  const { source, cache, reader } = await open(t);
  const total = reader.index.chunkCount;
  const stream = reader.createReadStream({ highWaterMark: CHUNK });
  let pieces = 0;
  await new Promise<void>((resolve) => {
    stream.on('data', () => {
      pieces++;
      if (pieces === 2) {
        source.hold(); // the next fetches hang: destroy lands while reads are in flight
        setImmediate(() => {
          stream.destroy();
          resolve();
        });
      }
    });
  });
  const fetchesAtDestroy = source.fetchCount;
  source.release();
  // The loads in flight at the destroy end; a stream still reading would have started more.
  await waitFor(() => cache.stats().inFlight === 0, 'loads to finish');
  t.is(source.fetchCount, fetchesAtDestroy, 'no fetch started after destroy');
  t.true(fetchesAtDestroy < total, `stopped early: ${fetchesAtDestroy} of ${total} chunks fetched`);
  t.true(stream.destroyed);
  cache.checkInvariants();
  assertNoPins(t, cache);
});

test('close() rejects requests waiting for a fetch and for memory with ERR_LR_CACHE_CLOSED', async (t) => {
  const source = new MemorySource();
  const page = 4096;
  const data = [0, 1, 2].map((i) => randomBytes(60 + i, page));
  const [h0, h1, h2] = data.map((d) => source.add(d)) as [string, string, string];
  const cache = new ChunkCache({ cacheBytes: 2 * page, pageBytes: page, workers: 0 });
  const request = (digestHex: string) => ({ digestHex, length: page, source });
  const kept = await cache.acquire(request(h0));
  source.delayNext(h1);
  const fetching = cache.acquire(request(h1)); // holds the second page, its fetch never ends
  const waitingForMemory = cache.acquire(request(h2));
  t.is(await promiseState(fetching), 'pending');
  t.is(await promiseState(waitingForMemory), 'pending');
  t.is(cache.stats().memoryWaits, 1);
  await cache.close();
  for (const [what, pending] of [
    ['waiting for a fetch', fetching],
    ['waiting for memory', waitingForMemory],
  ] as const) {
    const err = await withTimeout(
      pending.then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      ),
      2000,
      `request ${what} after close`,
    );
    t.is(err?.code, 'ERR_LR_CACHE_CLOSED', what);
  }
  await t.throwsAsync(cache.acquire(request(h0)), { code: 'ERR_LR_CACHE_CLOSED' });
  // A lease taken before close stays readable until released.
  const copy = new Uint8Array(page);
  cache.copyOut(kept, 0, copy, 0, page);
  t.true(Buffer.from(copy).equals(data[0]!));
  cache.release(kept);
});

test('close() while a chunk is decoding in the pool rejects its waiters with ERR_LR_CACHE_CLOSED', async (t) => {
  const source = new MemorySource();
  const data = randomBytes(77, 64 * MiB);
  const hex = source.add(data, undefined, 'none');
  const cache = new ChunkCache({ cacheBytes: 64 * MiB, workers: 1 });
  const acquire = cache.acquire({ digestHex: hex, length: data.byteLength, source });
  await waitFor(() => source.fetchCount === 1, 'the fetch');
  await new Promise<void>((resolve) => setImmediate(resolve));
  await cache.close();
  const err = await withTimeout(
    acquire.then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    ),
    5000,
    'waiter of a decode interrupted by close',
  );
  t.is(err?.code, 'ERR_LR_CACHE_CLOSED');
});

test('an aborted read of a reader in another thread (comlink) ends at once and leaks no pin', async (t) => {
  const { source, cache, snapshot } = await open(t);
  const handle = await exportArchive(snapshot, 'drive-scsi0');
  const remote = openRemoteArchive(handle, { readaheadChunks: 0 });
  t.teardown(() => handle.port.close());
  source.hold();
  const controller = new AbortController();
  const aborted = remote.readAt(Buffer.alloc(100), 2 * CHUNK, controller.signal);
  const kept = Buffer.alloc(100);
  const other = remote.readAt(kept, 2 * CHUNK);
  await waitFor(() => source.waiting === 1, 'the fetch to be held');
  const reason = new Error('nbd client closed');
  controller.abort(reason);
  t.is(await aborted.catch((e: unknown) => e), reason);
  source.release();
  t.is(await withTimeout(other, 5000, 'the other remote read'), 100);
  t.true(kept.equals(imageBytes(SPEC, 2 * CHUNK, 100)));
  // The coordinator pinned a lease for the aborted read too; the remote side must drop it.
  await waitFor(
    () => chunkCacheInternals(cache).table.pins(0 as never) === 0 && cache.stats().inFlight === 0,
    'pins to drop',
  );
  await sleep(20);
  assertNoPins(t, cache);
  t.is(source.fetchCount, 1);
});

test('a reader thread that dies while its chunk loads does not leave the chunk pinned forever', async (t) => {
  // One-chunk cache: a pin leaked by the dead thread would block every other reader.
  const { source, cache, snapshot, reader } = await open(t, CHUNK, 0);
  source.hold();
  const handle = await exportArchive(snapshot, 'drive-scsi0');
  const data: RemoteReaderData = {
    spec: SPEC,
    seed: 1,
    concurrency: 1,
    reads: 0,
    maxReadBytes: MiB,
    ranges: [{ offset: 10, length: 100 }],
  };
  const worker = new Worker(new URL('./fixtures/remote-reader.js', import.meta.url), { workerData: data });
  worker.postMessage({ handle }, [handle.port]);
  await waitFor(() => source.waiting === 1, "the worker's fetch to be held");
  await worker.terminate();
  source.release();
  await waitFor(() => cache.stats().inFlight === 0, 'the load to end');
  await sleep(50);
  const buffer = Buffer.alloc(100);
  const n = await withTimeout(
    reader.readAt(buffer, 3 * CHUNK),
    3000,
    'a main-thread read of another chunk after the reader thread died (its lease was never released)',
  ).catch((err: unknown) => err as Error);
  t.is(n, 100, String(n));
  assertNoPins(t, cache);
});

test('a remote read whose signal is aborted before it is sent drops its pin once (held count too)', async (t) => {
  const { cache, snapshot } = await open(t);
  const handle = await exportArchive(snapshot, 'drive-scsi0');
  const remote = openRemoteArchive(handle, { readaheadChunks: 0 });
  const held = new Int32Array(handle.held);
  const err = await remote.readAt(Buffer.alloc(100), 2 * CHUNK, AbortSignal.abort()).catch((e: unknown) => e);
  t.is((err as { name?: string }).name, 'AbortError');
  // The coordinator still loads the chunk and pins it for the reply (in the same turn as
  // the load ends); the remote side then drops that pin.
  const pinned = (): number => {
    let sum = 0;
    for (let slot = 0; slot < chunkCacheInternals(cache).table.slotCount; slot++)
      sum += chunkCacheInternals(cache).table.pins(slot as never);
    return sum;
  };
  await waitFor(() => {
    const stats = cache.stats();
    return stats.misses === 1 && stats.inFlight === 0 && pinned() === 0;
  }, 'the load to end and its pin to drop');
  t.deepEqual([...held], new Array<number>(held.length).fill(0), 'the held count dropped with the pin');
  // Closing the port unpins what the held count says is still out: nothing, so no throw.
  handle.port.close();
  await new Promise<void>((resolve) => setImmediate(resolve));
  assertNoPins(t, cache);
});

test('reads waiting on many loads under one signal add one abort listener to it, not one each', async (t) => {
  const { source, reader, cache } = await open(t, 8 * MiB, 0);
  source.hold();
  const controller = new AbortController();
  // Twelve reads of twelve chunks, all waiting for their fetch, all under one signal.
  const reads = Array.from({ length: 12 }, (_, k) =>
    reader.readAt(Buffer.alloc(100), k * CHUNK, controller.signal).catch((err: unknown) => err as Error),
  );
  await waitFor(() => source.waiting === 12, 'the twelve fetches to be held');
  t.is(getEventListeners(controller.signal, 'abort').length, 1);
  controller.abort();
  for (const outcome of await Promise.all(reads)) t.is((outcome as { name?: string }).name, 'AbortError');
  source.release();
  await waitFor(() => cache.stats().inFlight === 0, 'the loads to end');
  assertNoPins(t, cache);
});
