/** BlobPool (blob-pool.ts): blob memory handed out, taken back and handed out again, within its bound. */
import { imageBytes, vmImageSet } from '@liverestore/testkit';
import test from 'ava';
import { BlobPool, CLASS_BYTES, MIN_POOLED_BYTES } from '../src/blob-pool.js';
import { ChunkCache, LocalChunkSource, openSnapshot } from '../src/index.js';
import { fileSharedStore, MiB } from './helpers.js';

const sharedStore = fileSharedStore(
  test,
  'lr-blob-pool-',
  vmImageSet(11, { drives: 1, sizeBytes: 8 * MiB })[0]!.spec,
  MiB,
);

test('take gives an array of exactly the blob size over a buffer of its capacity class', (t) => {
  const pool = new BlobPool(16 * MiB);
  const blob = pool.take(3 * MiB + 5, 4 * MiB + 52);
  t.is(blob.byteLength, 3 * MiB + 5);
  t.is(blob.byteOffset, 0);
  t.is(blob.buffer.byteLength, 4 * MiB + CLASS_BYTES, 'the charge rounded up to the class size');
  t.true(pool.lent(blob));
  t.false(pool.lent(new Uint8Array(3 * MiB)));
});

test('small blobs and blobs larger than their charge get fresh memory, not pooled', (t) => {
  const pool = new BlobPool(16 * MiB);
  const small = pool.take(MIN_POOLED_BYTES - 1, 4 * MiB);
  t.is(small.buffer.byteLength, MIN_POOLED_BYTES - 1);
  t.false(pool.lent(small));
  const over = pool.take(2 * MiB, MiB);
  t.is(over.buffer.byteLength, 2 * MiB);
  t.false(pool.lent(over));
});

test('memory given back is handed out again for the same class, once', (t) => {
  const pool = new BlobPool(16 * MiB);
  const first = pool.take(2 * MiB, 4 * MiB + 52);
  const memory = first.buffer as ArrayBuffer;
  pool.give(memory);
  t.is(pool.freeBytes, 4 * MiB + CLASS_BYTES);
  const again = pool.take(MiB, 4 * MiB + 52);
  t.is(again.buffer, memory);
  t.is(again.byteLength, MiB);
  t.is(pool.reused, 1);
  t.is(pool.freeBytes, 0);
  // Another class does not take it.
  pool.give(memory);
  t.not(pool.take(MiB, 8 * MiB).buffer, memory);
  t.is(pool.reused, 1);
});

test('free memory is kept up to maxFreeBytes; sizes that are no class are not kept', (t) => {
  const pool = new BlobPool(10 * MiB);
  const buffers = [0, 1, 2].map(() => pool.take(2 * MiB, 4 * MiB + 52).buffer as ArrayBuffer);
  for (const buffer of buffers) pool.give(buffer);
  const classBytes = 4 * MiB + CLASS_BYTES;
  t.is(pool.freeBytes, 2 * classBytes, 'two kept, the third would pass 10 MiB');
  pool.give(new ArrayBuffer(MiB + 1));
  t.is(pool.freeBytes, 2 * classBytes);
});

for (const workers of [0, 1]) {
  test(`a local store's chunks are read into blob memory the cache uses again (${workers} decode threads)`, async (t) => {
    const { store, spec } = await sharedStore();
    const cache = new ChunkCache({ cacheBytes: 16 * MiB, workers });
    t.teardown(() => cache.close());
    const snap = await openSnapshot({
      source: await LocalChunkSource.open(store.dir),
      snapshot: 'vm/100',
      cache,
    });
    const reader = await snap.openArchive('drive-scsi0');
    const buffer = Buffer.alloc(4096);
    for (let at = 0; at < reader.size; at += MiB) {
      await reader.readAt(buffer, at);
      t.true(buffer.equals(imageBytes(spec, at, 4096)));
    }
    t.true(cache.stats().blobMemoryReused > 0, `reused ${cache.stats().blobMemoryReused} times`);
    await snap.close();
  });
}
