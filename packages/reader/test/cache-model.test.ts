/*
 * Model test of ChunkCache: random command sequences run against the real cache
 * (inline decode, an in-memory source whose fetches the test completes one at a time)
 * and against a plain reference model of a byte-budgeted LRU with pins, FIFO memory
 * waits and in-flight dedup. After every step the two must agree on everything
 * observable: counters, which chunks are cached, which fetches are in flight and in what
 * order, how every acquire ended, the bytes of every lease and the pin counts.
 */
import { randomBytes } from '@liverestore/testkit';
import test from 'ava';
import fc from 'fast-check';
import { ChunkCache, type Lease } from '../src/index.js';
import { chunkCacheInternals } from '../src/internal.js';
import { FetchFailure, MemorySource, type PendingFetch, withTimeout } from './helpers.js';
import { CacheModel, PAGE } from './reference-model.js';

const CHUNKS = 4;

type Command =
  | {
      readonly t: 'acquire';
      readonly k: number;
      readonly keep: boolean;
      readonly abortable: boolean;
      /** Hold this chunk's next fetch (so that the load stays in flight). */
      readonly slow: boolean;
    }
  | { readonly t: 'release'; readonly i: number }
  /** Lend a held lease (ChunkCache.lend): its pin is then kept past the read, within half the cache. */
  | { readonly t: 'lend'; readonly i: number }
  | { readonly t: 'failNext'; readonly k: number }
  | { readonly t: 'delayNext'; readonly k: number }
  | { readonly t: 'resolve'; readonly i: number; readonly ok: boolean }
  | { readonly t: 'abort'; readonly i: number }
  | { readonly t: 'prefetch'; readonly k: number };

interface Scenario {
  readonly capacityPages: number;
  readonly chunkLengths: readonly number[];
  readonly seed: number;
  readonly commands: readonly Command[];
}

// ---------------------------------------------------------------- the system under test

interface RealAcquire {
  readonly id: number;
  readonly k: number;
  readonly controller: AbortController | undefined;
  state: 'pending' | 'fulfilled' | 'rejected';
  error?: unknown;
  bytesOk?: boolean;
}

class ModelMismatch extends Error {}

function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new ModelMismatch(message());
}

async function settle(signature: () => string): Promise<void> {
  let last = signature();
  let stable = 0;
  for (let round = 0; round < 100 && stable < 3; round++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const now = signature();
    if (now === last) stable++;
    else {
      stable = 0;
      last = now;
    }
  }
}

interface RunTotals {
  runs: number;
  memoryWaits: number;
  completedAfterMemoryWait: number;
  failures: number;
  aborts: number;
  dedupJoins: number;
  prefetches: number;
  prefetchesUnused: number;
  evictions: number;
  lends: number;
  lendsRefused: number;
}

async function runScenario(scenario: Scenario, totals: RunTotals): Promise<void> {
  const { capacityPages, chunkLengths, seed } = scenario;
  const data = chunkLengths.map((length, k) => randomBytes(seed * 8 + k, length));
  const source = new MemorySource();
  source.holdAll = true;
  const hexes = data.map((d) => source.add(d));
  const cache = new ChunkCache({ cacheBytes: capacityPages * PAGE, pageBytes: PAGE, workers: 0 });
  const model = new CacheModel(capacityPages, chunkLengths);
  const acquires: RealAcquire[] = [];
  const held: { id: number; k: number; lease: Lease; lent: boolean }[] = [];
  const kOf = (hex: string): number => hexes.indexOf(hex);
  const log: string[] = [];

  const request = (k: number) => ({ digestHex: hexes[k]!, length: chunkLengths[k]!, source });
  const chunkBytesOk = (k: number, lease: Lease): boolean => {
    if (lease.length !== chunkLengths[k]) return false;
    const copy = new Uint8Array(lease.length);
    cache.copyOut(lease, 0, copy, 0, lease.length);
    return Buffer.from(copy).equals(data[k]!);
  };
  const signature = (): string =>
    JSON.stringify([cache.stats(), source.pending.length, acquires.map((a) => a.state), held.length]);

  const compare = (step: string): void => {
    const where = (): string => `after ${step}\n  ${log.join('\n  ')}`;
    try {
      cache.checkInvariants();
    } catch (err) {
      throw new ModelMismatch(`${(err as Error).message} ${where()}`);
    }
    const stats = cache.stats();
    check(stats.usedBytes <= stats.capacityBytes, () => `usedBytes ${stats.usedBytes} > capacity ${where()}`);
    const expected = {
      ...model.stats,
      inFlight: model.loads.size,
      cachedChunks: model.ready.length,
      lentBytes: model.lentPages() * PAGE,
      usedBytes: (capacityPages - model.free) * PAGE,
      capacityBytes: capacityPages * PAGE,
    };
    // Requests too large for the cache may or may not count as misses and failures, but
    // the same way for both.
    const extraMisses = stats.misses - model.stats.misses;
    check(
      extraMisses === stats.failures - model.stats.failures &&
        extraMisses >= 0 &&
        extraMisses <= model.tooLarge,
      () =>
        `stats.misses ${stats.misses} / failures ${stats.failures}, the model says ${model.stats.misses} / ${model.stats.failures} (+ ${model.tooLarge} too large) ${where()}`,
    );
    for (const [name, value] of Object.entries(expected)) {
      if (name === 'misses' || name === 'failures') continue;
      const actual = stats[name as keyof typeof stats];
      check(actual === value, () => `stats.${name} is ${actual}, the model says ${value} ${where()}`);
    }
    for (let k = 0; k < CHUNKS; k++) {
      check(
        cache.has(hexes[k]!) === model.isCached(k),
        () => `has(chunk ${k}) is ${cache.has(hexes[k]!)}, the model says ${model.isCached(k)} ${where()}`,
      );
    }
    const pending = source.pending.map((p) => `${kOf(p.digestHex)}:${p.mode}`);
    const modelPending = model.fetches.map((f) => `${f.k}:${f.mode}`);
    check(
      JSON.stringify(pending) === JSON.stringify(modelPending),
      () => `fetches in flight [${pending}], the model says [${modelPending}] ${where()}`,
    );
    for (const acquire of acquires) {
      const want = model.outcomes.get(acquire.id)!;
      check(
        acquire.state === want.state,
        () =>
          `acquire #${acquire.id} (chunk ${acquire.k}) is ${acquire.state}, the model says ${want.state} ${where()}`,
      );
      if (acquire.state === 'fulfilled') {
        check(acquire.bytesOk === true, () => `acquire #${acquire.id} got wrong bytes ${where()}`);
      }
      if (want.state === 'rejected' && want.error !== undefined) {
        check(
          acquire.error === want.error,
          () =>
            `acquire #${acquire.id} rejected with ${String(acquire.error)}, expected ${String(want.error)} ${where()}`,
        );
      }
      if (want.state === 'rejected' && want.code !== undefined) {
        const code = (acquire.error as { code?: unknown } | undefined)?.code;
        check(
          code === want.code,
          () => `acquire #${acquire.id} rejected with code ${String(code)} ${where()}`,
        );
      }
    }
    check(
      JSON.stringify(held.map((h) => h.id)) === JSON.stringify(model.held.map((h) => h.id)),
      () => `held leases ${held.map((h) => h.id)}, the model says ${model.held.map((h) => h.id)} ${where()}`,
    );
    const pinsBySlot = new Map<number, number>();
    for (const lease of held) {
      check(chunkBytesOk(lease.k, lease.lease), () => `held lease of chunk ${lease.k} changed ${where()}`);
      pinsBySlot.set(lease.lease.slot, (pinsBySlot.get(lease.lease.slot) ?? 0) + 1);
    }
    for (let slot = 0; slot < chunkCacheInternals(cache).table.slotCount; slot++) {
      const pins = chunkCacheInternals(cache).table.pins(slot as Lease['slot']);
      check(
        pins === (pinsBySlot.get(slot) ?? 0),
        () => `slot ${slot} has ${pins} pins for ${pinsBySlot.get(slot) ?? 0} held leases ${where()}`,
      );
    }
  };

  /** Completes auto fetches one at a time, oldest first, checking after each. */
  const drain = async (): Promise<void> => {
    for (;;) {
      const index = source.pending.findIndex((p) => p.mode === 'auto');
      if (index < 0) return;
      const fetch = source.pending[index]!;
      log.push(
        `  (fetch of chunk ${kOf(fetch.digestHex)} ${fetch.error === undefined ? 'succeeds' : 'fails'})`,
      );
      model.completeFetch(index, fetch.error);
      fetch.complete();
      await settle(signature);
      compare(`auto fetch of chunk ${kOf(fetch.digestHex)}`);
    }
  };

  const release = (index: number): void => {
    const [lease] = held.splice(index, 1);
    model.release(index);
    if (lease!.lent) cache.returnLent(lease!.lease);
    else cache.release(lease!.lease);
  };

  const resolveHeld = (which: number, ok: boolean): boolean => {
    const heldFetches = source.pending.filter((p) => p.mode === 'held');
    if (heldFetches.length === 0) return false;
    const fetch: PendingFetch = heldFetches[which % heldFetches.length]!;
    const index = source.pending.indexOf(fetch);
    const error = ok ? fetch.error : new FetchFailure(`held fetch of chunk ${kOf(fetch.digestHex)} fails`);
    log.push(`  (held fetch of chunk ${kOf(fetch.digestHex)} ${error === undefined ? 'succeeds' : 'fails'})`);
    model.completeFetch(index, error);
    if (ok) fetch.complete();
    else fetch.fail(error!);
    return true;
  };

  try {
    compare('start');
    let nextId = 0;
    for (const command of scenario.commands) {
      log.push(JSON.stringify(command));
      switch (command.t) {
        case 'acquire': {
          const id = nextId++;
          const controller = command.abortable ? new AbortController() : undefined;
          const acquire: RealAcquire = { id, k: command.k, controller, state: 'pending' };
          acquires.push(acquire);
          if (command.slow) {
            model.delayNext(command.k);
            source.delayNext(hexes[command.k]!);
          }
          model.acquire(id, command.k, command.keep);
          cache.acquire(request(command.k), controller?.signal).then(
            (lease) => {
              acquire.state = 'fulfilled';
              acquire.bytesOk = chunkBytesOk(command.k, lease);
              if (command.keep) held.push({ id, k: command.k, lease, lent: false });
              else cache.release(lease);
            },
            (err: unknown) => {
              acquire.state = 'rejected';
              acquire.error = err;
            },
          );
          break;
        }
        case 'release':
          if (held.length > 0) release(command.i % held.length);
          break;
        case 'lend': {
          if (held.length === 0) break;
          const index = command.i % held.length;
          const entry = held[index]!;
          if (entry.lent) break;
          const expected = model.lend(index);
          entry.lent = cache.lend(entry.lease);
          check(
            entry.lent === expected,
            () =>
              `lend(chunk ${entry.k}) returned ${entry.lent}, the model says ${expected}\n  ${log.join('\n  ')}`,
          );
          if (entry.lent) totals.lends++;
          else totals.lendsRefused++;
          break;
        }
        case 'failNext':
          model.failNext(command.k);
          source.failNext(hexes[command.k]!);
          break;
        case 'delayNext':
          model.delayNext(command.k);
          source.delayNext(hexes[command.k]!);
          break;
        case 'resolve':
          resolveHeld(command.i, command.ok);
          break;
        case 'abort': {
          const waiting = acquires.filter(
            (a) => a.controller !== undefined && model.outcomes.get(a.id)?.state === 'pending',
          );
          if (waiting.length === 0) break;
          const target = waiting[command.i % waiting.length]!;
          const reason = new Error(`abort #${target.id}`);
          reason.name = 'AbortError';
          model.abort(target.id, reason);
          target.controller!.abort(reason);
          totals.aborts++;
          break;
        }
        case 'prefetch': {
          const expected = model.prefetch(command.k);
          const started = cache.prefetch(request(command.k));
          check(
            started === expected,
            () =>
              `prefetch(chunk ${command.k}) returned ${started}, the model says ${expected}\n  ${log.join('\n  ')}`,
          );
          break;
        }
      }
      await settle(signature);
      compare(JSON.stringify(command));
      await drain();
    }

    // Wind down: release everything, complete every held fetch; every acquire must end
    // (requests that waited for memory complete once leases are released).
    log.push('wind down');
    for (let round = 0; round < 50 && (held.length > 0 || source.pending.length > 0); round++) {
      while (held.length > 0) {
        release(0);
        await settle(signature);
        compare('release during wind-down');
        await drain();
      }
      while (resolveHeld(0, true)) {
        await settle(signature);
        compare('held fetch completed during wind-down');
        await drain();
      }
    }
    for (const acquire of acquires) {
      check(acquire.state !== 'pending', () => `acquire #${acquire.id} never ended\n  ${log.join('\n  ')}`);
    }
    check(model.loads.size === 0 && model.queue.length === 0, () => 'model did not drain');
    totals.runs++;
    totals.memoryWaits += model.stats.memoryWaits;
    totals.completedAfterMemoryWait += model.completedAfterMemoryWait;
    totals.failures += model.stats.failures;
    totals.dedupJoins += model.stats.dedupJoins;
    totals.prefetches += model.stats.prefetches;
    totals.prefetchesUnused += model.stats.prefetchesUnused;
    totals.evictions += model.stats.evictions;
  } finally {
    await cache.close();
  }
  cache.checkInvariants();
}

// ---------------------------------------------------------------- generators

const chunkIndex = fc.integer({ min: 0, max: CHUNKS - 1 });
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant('acquire' as const),
      k: chunkIndex,
      keep: fc.boolean(),
      abortable: fc.boolean(),
      slow: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), i: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('lend' as const), i: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('failNext' as const), k: chunkIndex }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('delayNext' as const), k: chunkIndex }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('resolve' as const), i: fc.nat(7), ok: fc.boolean() }),
  },
  // Weight 4: at 3, a thousand random runs held 97–131 aborts, too close to the 100 the tests require.
  { weight: 4, arbitrary: fc.record({ t: fc.constant('abort' as const), i: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('prefetch' as const), k: chunkIndex }) },
);

/** Chunks of 1..3 pages; with `fitting`, never more pages than the cache has. */
function scenarioArb(fitting: boolean): fc.Arbitrary<Scenario> {
  return fc.integer({ min: 1, max: 8 }).chain((capacityPages) =>
    fc.record({
      capacityPages: fc.constant(capacityPages),
      chunkLengths: fc.array(
        fc
          .tuple(
            // Mostly one page, so that several chunks are cached at once and LRU order matters.
            fc.oneof(
              { weight: 3, arbitrary: fc.constant(1) },
              { weight: 2, arbitrary: fc.integer({ min: 1, max: fitting ? Math.min(3, capacityPages) : 3 }) },
            ),
            fc.integer({ min: 1, max: PAGE }),
          )
          .map(([pages, tail]) => (pages - 1) * PAGE + tail),
        { minLength: CHUNKS, maxLength: CHUNKS },
      ),
      seed: fc.nat(1_000_000),
      commands: fc.array(commandArb, { minLength: 1, maxLength: 30 }),
    }),
  );
}

function emptyTotals(): RunTotals {
  return {
    runs: 0,
    memoryWaits: 0,
    completedAfterMemoryWait: 0,
    failures: 0,
    aborts: 0,
    dedupJoins: 0,
    prefetches: 0,
    prefetchesUnused: 0,
    evictions: 0,
    lends: 0,
    lendsRefused: 0,
  };
}

// ---------------------------------------------------------------- tests

test('the cache agrees with the reference model (chunks that fit the cache)', async (t) => {
  const totals = emptyTotals();
  await fc.assert(
    fc.asyncProperty(scenarioArb(true), (scenario) => runScenario(scenario, totals)),
    { numRuns: 2000, includeErrorInReport: true },
  );
  t.log(JSON.stringify(totals));
  // The runs really went through the interesting paths.
  t.true(totals.memoryWaits > 100, 'requests waited for memory');
  t.true(totals.completedAfterMemoryWait > 100, 'requests that waited for memory completed after a release');
  t.true(totals.failures > 100, 'fetches failed');
  t.true(totals.aborts > 100, 'waiting requests were aborted');
  t.true(totals.dedupJoins > 100, 'requests joined a load in flight');
  t.true(totals.prefetches > 100, 'prefetches started');
  t.true(totals.evictions > 100, 'chunks were evicted');
  t.true(totals.lends > 50, 'held leases were lent');
  t.true(totals.lendsRefused > 5, 'lending was refused past half the cache');
});

test('the cache agrees with the reference model (chunks may be larger than the cache)', async (t) => {
  const totals = emptyTotals();
  await fc.assert(
    fc.asyncProperty(scenarioArb(false), (scenario) => runScenario(scenario, totals)),
    { numRuns: 100, includeErrorInReport: true },
  );
  t.true(totals.runs > 0);
});

test('a request for a chunk larger than the whole cache fails with ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE', async (t) => {
  const source = new MemorySource();
  const length = 3 * PAGE;
  const hex = source.add(randomBytes(9, length));
  const cache = new ChunkCache({ cacheBytes: 2 * PAGE, pageBytes: PAGE, workers: 0 });
  t.teardown(() => cache.close());
  const acquire = cache.acquire({ digestHex: hex, length, source });
  const outcome = await Promise.race([
    acquire.then(
      () => 'resolved',
      (err: unknown) => (err as { code?: string }).code ?? String(err),
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve('still pending after 1 s'), 1000)),
  ]);
  t.is(outcome, 'ERR_LR_CHUNK_TOO_LARGE_FOR_CACHE');
  t.is(cache.stats().inFlight, 0);
  cache.checkInvariants();
  // The cache still serves chunks that fit.
  const small = randomBytes(10, PAGE);
  const smallHex = source.add(small);
  const lease = await withTimeout(
    cache.acquire({ digestHex: smallHex, length: PAGE, source }),
    1000,
    'a chunk that fits',
  );
  cache.release(lease);
  t.is(lease.length, PAGE);
});

test('a hit makes a chunk most recently used; eviction takes the least recently used unpinned chunk', async (t) => {
  const source = new MemorySource();
  const [a, b, c, d, e] = [1, 2, 3, 4, 5].map((i) => source.add(randomBytes(i, PAGE))) as [
    string,
    string,
    string,
    string,
    string,
  ];
  const cache = new ChunkCache({ cacheBytes: 3 * PAGE, pageBytes: PAGE, workers: 0 });
  t.teardown(() => cache.close());
  const touch = async (hex: string): Promise<void> => {
    cache.release(await cache.acquire({ digestHex: hex, length: PAGE, source }));
  };
  await touch(a);
  await touch(b);
  await touch(c);
  await touch(a); // hit: a is now the most recently used
  await touch(d); // evicts b, the least recently used
  t.deepEqual(
    [a, b, c, d].map((h) => cache.has(h)),
    [true, false, true, true],
  );
  const pinned = await cache.acquire({ digestHex: c, length: PAGE, source });
  await touch(e); // c is the least recently used but pinned: a goes
  t.deepEqual(
    [a, c, d, e].map((h) => cache.has(h)),
    [false, true, true, true],
  );
  cache.release(pinned);
  t.like(cache.stats(), { hits: 2, misses: 5, evictions: 2 });
  cache.checkInvariants();
});

test('readahead holds at most a quarter of the cache, across all readers; unread prefetches evicted are counted', async (t) => {
  const source = new MemorySource();
  const hexes = Array.from({ length: 40 }, (_, k) => source.add(randomBytes(900 + k, PAGE)));
  const cache = new ChunkCache({ cacheBytes: 16 * PAGE, pageBytes: PAGE, workers: 0 });
  t.teardown(() => cache.close());
  const request = (k: number) => ({ digestHex: hexes[k]!, length: PAGE, source });
  // Two "readers" prefetching: 4 pages (a quarter of 16) may be unread at once, whoever asks.
  const started = [0, 1, 2, 3, 4, 5].map((k) => cache.prefetch(request(k)));
  t.deepEqual(started, [true, true, true, true, false, false]);
  await withTimeout(
    (async () => {
      while (cache.stats().inFlight > 0) await new Promise((r) => setTimeout(r, 1));
    })(),
    5000,
    'prefetches to finish',
  );
  t.false(cache.prefetch(request(6)), 'ready but unread prefetches still count');
  // Reading one frees its share of the budget.
  cache.release(await cache.acquire(request(0)));
  t.true(cache.prefetch(request(6)));
  // Demand loads fill the cache; the oldest unread prefetches are evicted and counted.
  for (let k = 10; k < 30; k++) cache.release(await cache.acquire(request(k)));
  const stats = cache.stats();
  t.is(stats.prefetches, 5);
  t.is(stats.prefetchesUnused, 4, 'prefetches 1, 2, 3 and 6 were never read');
  t.true(cache.prefetch(request(7)), 'evicted unread prefetches no longer hold the budget');
  cache.checkInvariants();
});
