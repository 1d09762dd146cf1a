/*
 * ChunkCacheOptions.prefault: the cache's memory is mapped when the cache is made, so the
 * first decodes do not pay first-touch page faults. Resident memory is read from /proc
 * (tests run on Linux), in this test file's own process (ava runs each file in a child
 * process), one test at a time.
 */
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { ChunkCache } from '../src/index.js';
import { PageArena } from '../src/page-arena.js';
import { MiB } from './helpers.js';

const keepAll = { mayEvict: () => false, savingPages: 0, evicted: () => {} };

async function residentBytes(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (kib === null) throw new Error('no VmRSS in /proc/self/status');
  return Number(kib[1]) * 1024;
}

const CACHE_BYTES = 96 * MiB;

test.serial('a cache made with prefault is resident at once, before any chunk is read', async (t) => {
  const before = await residentBytes();
  const cache = new ChunkCache({ cacheBytes: CACHE_BYTES, workers: 0, prefault: true });
  t.teardown(() => cache.close());
  const grown = (await residentBytes()) - before;
  t.true(grown >= 0.9 * CACHE_BYTES, `resident memory grew ${(grown / MiB).toFixed(1)} MiB`);
});

test.serial('without prefault (the default) the memory stays unmapped until chunks need it', async (t) => {
  const before = await residentBytes();
  const cache = new ChunkCache({ cacheBytes: CACHE_BYTES, workers: 0 });
  t.teardown(() => cache.close());
  const grown = (await residentBytes()) - before;
  t.true(grown < 0.25 * CACHE_BYTES, `resident memory grew ${(grown / MiB).toFixed(1)} MiB`);
});

test.serial('mapAllPages writes only a new arena: with a page in use it refuses and writes nothing', (t) => {
  const arena = new PageArena(8, 4096, keepAll);
  const used = arena.tryAllocate(2)!;
  const pages = arena.pages(used);
  const bytes = new Uint8Array(arena.memory.arena);
  for (const page of pages) bytes.fill(0xab, page * 4096, (page + 1) * 4096);
  t.throws(() => arena.mapAllPages(), { message: /only a new arena/ });
  for (const page of pages)
    t.true(
      bytes.subarray(page * 4096, (page + 1) * 4096).every((b) => b === 0xab),
      `page ${page} unchanged`,
    );
});
