/*
 * The blob budget of the chunk cache (blob-budget.ts): blobs between fetch and decode stay
 * within it however many readers miss at once, urgent loads never wait behind background
 * blobs, and tiny caches with a budget smaller than one blob still serve everyone.
 */
import { imageBytes } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { ChunkCache, type FetchHints } from '../src/index.js';
import { BACKGROUND_BLOB_SHARE, BlobBudget, blobChargeBytes } from '../src/internal.js';
import { MemorySource, MiB, withTimeout } from './helpers.js';

/**
 * A memory source whose blobs the decode pool may take (as the HTTP, S3 and local sources'
 * may): a blob still readable here is one the pool has not taken to a decode thread yet,
 * i.e. a blob held on this thread. Counts the most of those at any fetch.
 */
class HandingSource extends MemorySource {
  readonly blobsAreTransferable = true;
  readonly #handed: Uint8Array[] = [];
  /** The most blobs fetched and not yet moved to a decode thread, seen at any fetch. */
  mostOnThisThread = 0;

  override async fetchChunk(
    digestHex: string,
    signal?: AbortSignal,
    hints?: FetchHints,
  ): Promise<Uint8Array> {
    const blob = await super.fetchChunk(digestHex, signal, hints);
    this.#handed.push(blob);
    this.mostOnThisThread = Math.max(this.mostOnThisThread, this.onThisThread);
    return blob;
  }

  /** Blobs handed out that are still here (not detached by a transfer to a decode thread). */
  get onThisThread(): number {
    return this.#handed.filter((b) => b.byteLength > 0).length;
  }
}

function chunks(source: MemorySource, count: number, from = 1): string[] {
  return Array.from({ length: count }, (_, i) =>
    source.add(imageBytes({ sizeBytes: MiB, seed: from + i, mix: { random: 1 } }, 0, MiB), undefined, 'none'),
  );
}

function budgetCache(t: ExecutionContext, blobBudgetBytes: number, cacheBytes = 64 * MiB): ChunkCache {
  const cache = new ChunkCache({ cacheBytes, workers: 1, blobBudgetBytes });
  t.teardown(() => cache.close());
  return cache;
}

test('40 concurrent misses with one decode thread hold no more blobs than the budget allows', async (t) => {
  for (const background of [true, false]) {
    const source = new HandingSource();
    const digests = chunks(source, 40);
    const budget = 4 * blobChargeBytes(MiB);
    const cache = budgetCache(t, budget);
    const leases = await withTimeout(
      Promise.all(digests.map((digestHex) => cache.acquire({ digestHex, length: MiB, source, background }))),
      60_000,
      '40 loads',
    );
    for (const [i, lease] of leases.entries()) {
      const out = Buffer.alloc(16);
      cache.copyOut(lease, 0, out, 0, 16);
      t.deepEqual(out, Buffer.from(imageBytes({ sizeBytes: MiB, seed: 1 + i, mix: { random: 1 } }, 0, 16)));
      cache.release(lease);
    }
    // Background loads stop at their share of the budget (3 blobs), urgent ones at all of it.
    const allowed = Math.floor((background ? budget * BACKGROUND_BLOB_SHARE : budget) / blobChargeBytes(MiB));
    t.true(
      source.mostOnThisThread <= allowed,
      `${background ? 'background' : 'urgent'}: ${source.mostOnThisThread} blobs waited on this thread at once, budget allows ${allowed}`,
    );
    const stats = cache.stats();
    t.true(stats.peakBlobBytes <= budget);
    t.is(stats.blobBytes, 0, 'every charge was given back');
    t.is(stats.misses, 40);
  }
});

test('a cache of one chunk with a budget smaller than one blob serves many concurrent readers', async (t) => {
  const source = new MemorySource();
  const digests = chunks(source, 6, 100);
  const cache = budgetCache(t, 1000, MiB);
  const reads = Array.from({ length: 24 }, async (_, r) => {
    const i = (r * 7) % digests.length;
    const lease = await cache.acquire({
      digestHex: digests[i]!,
      length: MiB,
      source,
      background: r % 3 !== 0,
    });
    const out = Buffer.alloc(8);
    cache.copyOut(lease, MiB - 8, out, 0, 8);
    cache.release(lease);
    return out.equals(imageBytes({ sizeBytes: MiB, seed: 100 + i, mix: { random: 1 } }, MiB - 8, 8));
  });
  const ok = await withTimeout(Promise.all(reads), 60_000, '24 readers on a one-chunk cache');
  t.true(ok.every(Boolean));
  t.is(cache.stats().blobBytes, 0);
  cache.checkInvariants();
});

test('an urgent load fetches at once while background blobs fill their share, and a waiting load that turns urgent goes first', async (t) => {
  const source = new MemorySource();
  const [b1, b2, b3, b4, b5, u] = chunks(source, 6, 200);
  const cache = budgetCache(t, 4 * blobChargeBytes(MiB));
  const request = (digestHex: string, background: boolean) => ({
    digestHex,
    length: MiB,
    source,
    background,
  });
  const fetching = (hex: string): boolean => source.pending.some((p) => p.digestHex === hex);
  const until = async (check: () => boolean, what: string): Promise<void> => {
    for (let turns = 0; !check(); turns++) {
      if (turns > 100_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };

  source.holdAll = true;
  const loads = [b1, b2, b3, b4, b5].map((hex) => cache.acquire(request(hex!, true)));
  await until(() => source.pending.length === 3, 'three background fetches');
  t.deepEqual(
    source.pending.map((p) => p.digestHex),
    [b1, b2, b3],
    'background blobs stop at three quarters of the budget',
  );
  t.is(cache.stats().blobBytes, 3 * blobChargeBytes(MiB));

  loads.push(cache.acquire(request(u!, false)));
  await until(() => fetching(u!), 'the urgent fetch');
  t.false(fetching(b4!), 'the urgent load did not wait behind the background ones');

  // b5 waits behind b4; a reader outside any stream joins it: it turns urgent and goes first.
  loads.push(cache.acquire(request(b5!, false)));
  for (const p of [...source.pending].filter((p) => p.digestHex === u)) p.complete();
  await until(() => fetching(b5!), 'b5 once the urgent blob was decoded');
  t.false(fetching(b4!), 'the older background load still waits');

  source.holdAll = false;
  for (let done = false; !done; ) {
    for (const p of [...source.pending]) p.complete();
    done = await Promise.race([
      Promise.all(loads).then(() => true),
      new Promise<boolean>((resolve) => setImmediate(() => resolve(false))),
    ]);
  }
  for (const lease of await Promise.all(loads)) cache.release(lease);
  t.is(cache.stats().blobBytes, 0);
});

test('readahead starts no load while an urgent load waits for blob bytes', async (t) => {
  const source = new MemorySource();
  const [u1, u2, ahead] = chunks(source, 3, 300);
  // Room for one blob: the second urgent load waits for its bytes.
  const cache = budgetCache(t, blobChargeBytes(MiB));
  source.holdAll = true;
  const first = cache.acquire({ digestHex: u1!, length: MiB, source });
  const second = cache.acquire({ digestHex: u2!, length: MiB, source });
  for (let turns = 0; source.pending.length === 0; turns++) {
    if (turns > 100_000) throw new Error('timed out waiting for the first fetch');
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.is(source.pending.length, 1, 'the second urgent load waits for blob bytes');
  t.false(cache.prefetch({ digestHex: ahead!, length: MiB, source }), 'no readahead while it waits');
  t.is(cache.stats().prefetches, 0);
  source.holdAll = false;
  for (const p of [...source.pending]) p.complete();
  cache.release(await first);
  cache.release(await second);
  t.true(cache.prefetch({ digestHex: ahead!, length: MiB, source }), 'readahead again once nobody waits');
});

test('the budget on its own: urgent charges first, a charge larger than its share goes alone, close rejects waiters', async (t) => {
  const budget = new BlobBudget(400);
  const background = { urgent: false };
  const urgent = { urgent: true };
  const closed = (): Error => new Error('closed');
  const releaseBig = await budget.reserve(1000, background, closed); // alone: nothing held
  const waitingBackground = budget.reserve(100, background, closed);
  const urgentBig = await budget.reserve(1000, urgent, closed); // no urgent charge held: goes
  t.is(budget.heldBytes, 2000);
  const waitingUrgent = budget.reserve(100, urgent, closed);
  t.true(budget.isWaiting(urgent) && budget.isWaiting(background));
  const order: string[] = [];
  void waitingBackground.then(() => order.push('background'));
  void waitingUrgent.then(() => order.push('urgent'));
  urgentBig();
  releaseBig();
  await Promise.resolve();
  await Promise.resolve();
  t.deepEqual(order, ['urgent', 'background']);
  t.is(budget.heldBytes, 200);
  t.throws(() => urgentBig(), { message: /twice/ });
  const late = budget.reserve(400, background, closed);
  budget.close(closed);
  await t.throwsAsync(late, { message: 'closed' });
  t.is(budget.peakBytes, 2000);
});
