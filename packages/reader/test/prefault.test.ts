/*
 * The cache maps its memory ahead of need: free pages that were never written are written
 * in event-loop turns, in the order they will be handed out, and no chunk's bytes change.
 * Resident memory is read from /proc (tests run on Linux), in this test file's own process
 * (ava runs each file in a child process), one test at a time.
 */
import { readFile } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import test from 'ava';
import { ChunkCache } from '../src/index.js';
import { PageArena } from '../src/page-arena.js';
import type { SlotIndex } from '../src/slot-table.js';
import { MiB } from './helpers.js';

const PAGE = 4096;
const keepAll = { mayEvict: () => false, savingPages: 0, evicted: () => {} };

function pageBytes(arena: PageArena, page: number): Uint8Array {
  return new Uint8Array(arena.memory.arena, page * PAGE, PAGE);
}

test.serial('touchAhead writes the free pages handed out next, never a used one', (t) => {
  const arena = new PageArena(8, PAGE, keepAll);
  new Uint8Array(arena.memory.arena).fill(0xff);
  const used = arena.tryAllocate(3)!;
  for (const page of arena.pages(used)) pageBytes(arena, page).fill(0xab);
  t.is(arena.untouchedBytes, 5 * PAGE, 'the three pages handed out are no longer untouched');

  t.true(arena.touchAhead(1));
  t.is(arena.untouchedBytes, 4 * PAGE);
  const written = [...Array(8).keys()].filter((page) => pageBytes(arena, page)[0] === 0);
  t.is(written.length, 1, 'one page written');
  const next = arena.tryAllocate(1)!;
  t.deepEqual([...arena.pages(next)], written, 'the page written is the one handed out next');

  arena.free(next);
  t.is(arena.untouchedBytes, 4 * PAGE, 'a freed page goes above the untouched ones');
  t.false(arena.touchAhead(Number.POSITIVE_INFINITY));
  t.is(arena.untouchedBytes, 0);
  for (const page of arena.pages(used))
    t.true(
      pageBytes(arena, page).every((byte) => byte === 0xab),
      `page ${page} of a used slot unchanged`,
    );
  arena.checkInvariants(1);
  arena.free(used as SlotIndex);
  arena.checkInvariants(0);
});

test.serial('a handed-out page is never touched again: allocation overtakes the toucher', (t) => {
  const arena = new PageArena(8, PAGE, keepAll);
  arena.tryAllocate(6);
  t.is(arena.untouchedBytes, 2 * PAGE);
  t.false(arena.touchAhead(2 * PAGE));
  t.is(arena.untouchedBytes, 0);
});

async function residentBytes(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (kib === null) throw new Error('no VmRSS in /proc/self/status');
  return Number(kib[1]) * 1024;
}

/** Event-loop turns until the cache has mapped all of its memory (bounded: a hang fails). */
async function turnsUntilMapped(cache: ChunkCache): Promise<number> {
  for (let turns = 1; turns <= 10_000; turns++) {
    await nextTurn();
    if (cache.stats().untouchedBytes === 0) return turns;
  }
  throw new Error('the cache never finished mapping its memory');
}

const CACHE_BYTES = 96 * MiB;

test.serial('a new cache becomes resident in event-loop turns, before any chunk is read', async (t) => {
  const before = await residentBytes();
  const cache = new ChunkCache({ cacheBytes: CACHE_BYTES, workers: 0, prefault: true });
  t.teardown(() => cache.close());
  t.is(cache.stats().untouchedBytes, CACHE_BYTES - 1 * MiB, 'the first megabyte is mapped at once');
  const turns = await turnsUntilMapped(cache);
  t.true(turns >= 90, `${turns} turns: a slice per turn, not all at once`);
  const grown = (await residentBytes()) - before;
  t.true(grown >= 0.9 * CACHE_BYTES, `resident memory grew ${(grown / MiB).toFixed(1)} MiB`);
});

test.serial('without prefault (the default) the memory stays unmapped until chunks need it', async (t) => {
  const before = await residentBytes();
  const cache = new ChunkCache({ cacheBytes: CACHE_BYTES, workers: 0 });
  t.teardown(() => cache.close());
  for (let turn = 0; turn < 200; turn++) await nextTurn();
  t.is(cache.stats().untouchedBytes, CACHE_BYTES);
  const grown = (await residentBytes()) - before;
  t.true(grown < 0.25 * CACHE_BYTES, `resident memory grew ${(grown / MiB).toFixed(1)} MiB`);
});
