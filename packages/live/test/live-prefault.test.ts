/*
 * A live restore's own cache maps its memory ahead of the guest's first reads (see
 * ChunkCacheOptions.prefault): with a cache larger than everything the copy ever decodes,
 * the pages no chunk needed become resident too.
 */
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fixtureTest, MiB, restoreFixture } from './helpers.js';

const test = fixtureTest(31);

test('the cache a live restore makes maps all of its memory, beyond what the copy uses', async (t) => {
  const { f } = t.context;
  const cacheBytes = 64 * MiB; // the fixture's drives hold 18 MiB in all
  const restore = await restoreFixture(f, join(f.dir, 'target'), { cacheBytes, workers: 1 });
  t.teardown(() => restore.close());
  let turns = 0;
  while (restore.cacheStats().untouchedBytes > 0) {
    if (++turns > 10_000) throw new Error(`still ${restore.cacheStats().untouchedBytes} bytes unmapped`);
    await nextTurn();
  }
  t.is(restore.cacheStats().capacityBytes, cacheBytes);
  t.true(restore.cacheStats().usedBytes < cacheBytes / 2, 'the copy used less than half of it');
});
