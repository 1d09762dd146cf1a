/*
 * A live restore's own cache maps its memory before it serves (see
 * ChunkCacheOptions.prefault): with a cache much larger than everything the copy ever
 * decodes, the process is resident for the whole cache at once. Resident memory is read
 * from /proc in this test file's own process (ava runs each file in a child process).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixtureTest, MiB, restoreFixture } from './helpers.js';

const test = fixtureTest(31);

async function residentBytes(): Promise<number> {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile('/proc/self/status', 'utf8'));
  if (kib === null) throw new Error('no VmRSS in /proc/self/status');
  return Number(kib[1]) * 1024;
}

test('the cache a live restore makes is resident from the start, beyond what the copy uses', async (t) => {
  const { f } = t.context;
  const cacheBytes = 160 * MiB; // the fixture's drives hold 18 MiB in all
  const before = await residentBytes();
  const restore = await restoreFixture(f, join(f.dir, 'target'), { cacheBytes, workers: 1 });
  t.teardown(() => restore.close());
  const grown = (await residentBytes()) - before;
  t.true(grown >= 0.9 * cacheBytes, `resident memory grew ${(grown / MiB).toFixed(1)} MiB`);
  t.true(restore.cacheStats().usedBytes < cacheBytes / 4, 'the copy used a small part of it');
});
