/*
 * ChunkCache under random timing: fetches with random latency and random failures,
 * requests starting, holding their lease and aborting at random moments, prefetches in
 * between. The exact outcome is not modelled; what must hold whatever the timing is:
 * every request ends, every lease has the right bytes for as long as it is held, nothing
 * stays pinned, and memory stays within the budget.
 */
import { randomBytes } from '@liverestore/testkit';
import test from 'ava';
import fc from 'fast-check';
import { ChunkCache, type Lease } from '../src/index.js';
import { chunkCacheInternals } from '../src/internal.js';
import { FetchFailure, MemorySource, sleep, withTimeout } from './helpers.js';

const PAGE = 4096;
const CHUNKS = 4;
const chunkIndex = fc.integer({ min: 0, max: CHUNKS - 1 });

/** A source with random latency and random failures, for the timing-chaos property. */
class JitterSource extends MemorySource {
  constructor(
    readonly rand: () => number,
    readonly failRate: number,
  ) {
    super();
  }

  override fetchChunk(digestHex: string, signal?: AbortSignal): Promise<Uint8Array> {
    const fetched = super.fetchChunk(digestHex, signal);
    const delayMs = Math.floor(this.rand() * 3);
    const fail = this.rand() < this.failRate;
    return new Promise<Uint8Array>((resolve, reject) => {
      setTimeout(() => {
        if (fail) reject(new FetchFailure(`jitter failure of ${digestHex}`));
        else fetched.then(resolve, reject);
      }, delayMs);
    });
  }
}

test('under random timing every request ends, every lease is right, and nothing stays pinned', async (t) => {
  let requests = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 6 }).chain((capacityPages) =>
        fc.record({
          capacityPages: fc.constant(capacityPages),
          pages: fc.array(fc.integer({ min: 1, max: Math.min(3, capacityPages) }), {
            minLength: CHUNKS,
            maxLength: CHUNKS,
          }),
          seed: fc.nat(1_000_000),
          failRate: fc.constantFrom(0, 0, 0.2),
          ops: fc.array(
            fc.record({
              k: chunkIndex,
              startMs: fc.integer({ min: 0, max: 4 }),
              holdMs: fc.integer({ min: 0, max: 3 }),
              abortMs: fc.option(fc.integer({ min: 0, max: 4 })),
              prefetch: fc.boolean(),
            }),
            { minLength: 1, maxLength: 25 },
          ),
        }),
      ),
      async ({ capacityPages, pages, seed, failRate, ops }) => {
        const rand = (() => {
          let a = seed;
          return () => {
            a = (a * 1103515245 + 12345) % 2147483648;
            return a / 2147483648;
          };
        })();
        const source = new JitterSource(rand, failRate);
        const data = pages.map((p, k) => randomBytes(seed + k, p * PAGE - ((k * 37) % PAGE)));
        const hexes = data.map((d) => source.add(d));
        const cache = new ChunkCache({ cacheBytes: capacityPages * PAGE, pageBytes: PAGE, workers: 0 });
        const problems: string[] = [];
        let maxUsed = 0;
        try {
          const runs = ops.map(async (op, i) => {
            await sleep(op.startMs);
            if (op.prefetch) cache.prefetch({ digestHex: hexes[op.k]!, length: data[op.k]!.length, source });
            const controller = new AbortController();
            const reason = new Error(`abort ${i}`);
            if (op.abortMs !== null) setTimeout(() => controller.abort(reason), op.abortMs);
            try {
              const lease = await cache.acquire(
                { digestHex: hexes[op.k]!, length: data[op.k]!.length, source },
                controller.signal,
              );
              maxUsed = Math.max(maxUsed, cache.stats().usedBytes);
              cache.checkInvariants();
              const copy = new Uint8Array(lease.length);
              cache.copyOut(lease, 0, copy, 0, lease.length);
              if (!Buffer.from(copy).equals(data[op.k]!)) problems.push(`op ${i}: wrong bytes`);
              await sleep(op.holdMs);
              cache.copyOut(lease, 0, copy, 0, lease.length);
              if (!Buffer.from(copy).equals(data[op.k]!)) problems.push(`op ${i}: bytes changed under a pin`);
              cache.release(lease);
            } catch (err) {
              if (err === reason) return;
              if (err instanceof FetchFailure && failRate > 0) return;
              problems.push(`op ${i}: ${String(err)}`);
            }
          });
          await withTimeout(Promise.all(runs), 5000, 'every request to end');
          await withTimeout(
            (async () => {
              while (cache.stats().inFlight > 0) await sleep(1);
            })(),
            5000,
            'loads to end',
          );
          cache.checkInvariants();
          for (let slot = 0; slot < chunkCacheInternals(cache).table.slotCount; slot++) {
            if (chunkCacheInternals(cache).table.pins(slot as Lease['slot']) !== 0)
              problems.push(`slot ${slot} still pinned`);
          }
          if (maxUsed > cache.capacityBytes) problems.push(`used ${maxUsed} bytes`);
          requests += ops.length;
        } finally {
          await cache.close();
        }
        if (problems.length > 0) throw new Error(problems.join('; '));
      },
    ),
    { numRuns: 100, includeErrorInReport: true },
  );
  t.true(requests > 200, `${requests} requests`);
});
