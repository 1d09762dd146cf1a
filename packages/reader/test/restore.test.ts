/*
 * restoreArchive's data path: each distinct chunk is fetched and decoded once and written
 * by a decode thread at every offset where it occurs, past the cache's memory; zstd,
 * DEFLATE and encrypted stores, fixed and dynamic archives (unaligned offsets); writes
 * with O_DIRECT where the file system allows it, through the page cache otherwise.
 */
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CryptConfig } from '@liverestore/format';
import { allowsDirectIo, randomBytes } from '@liverestore/testkit';
import test from 'ava';
import { DirectDescriptor, pageAlignedSharedBuffer } from '../src/direct-io.js';
import { ChunkCache, LocalChunkSource, openSnapshot, restoreArchive } from '../src/index.js';
import { DirectWriter, stageChunk } from '../src/staged-writes.js';
import { backupInputs, CountingSource, KiB, testDir } from './helpers.js';

const CHUNK = 256 * KiB;

/** Chunks A B A 0 A C B + a short tail: three chunks used more than once, one zero, C half zeros. */
function imageWithRepeats(): Buffer {
  const a = randomBytes(1, CHUNK);
  const b = randomBytes(2, CHUNK);
  const c = Buffer.concat([Buffer.alloc(CHUNK / 2), randomBytes(3, CHUNK / 2)]);
  const tail = randomBytes(4, 12_345);
  return Buffer.concat([a, b, a, Buffer.alloc(CHUNK), a, c, b, tail]);
}

for (const store of [
  { title: 'zstd', options: {} },
  { title: 'DEFLATE', options: { compress: 'deflate' as const } },
  { title: 'encrypted zstd', options: { crypt: new CryptConfig(Buffer.alloc(32, 7)) } },
]) {
  test(`${store.title}: every distinct chunk is fetched once and written at each of its offsets, past the cache's memory`, async (t) => {
    const dir = await testDir(t);
    const image = imageWithRepeats();
    await backupInputs(dir, '100', [{ name: 'drive-scsi0.img', data: image }], {
      chunkSizeBytes: CHUNK,
      ...store.options,
    });
    const source = new CountingSource(await LocalChunkSource.open(join(dir, 'store')));
    const cache = new ChunkCache({ cacheBytes: 4 * CHUNK, workers: 2 });
    t.teardown(() => cache.close());
    const crypt = 'crypt' in store.options ? store.options.crypt : undefined;
    const snapshot = await openSnapshot({ source, snapshot: 'vm/100', cache, crypt });
    const reader = await snapshot.openArchive('drive-scsi0.img');
    await mkdir(join(dir, 'out'));
    const target = join(dir, 'out', 'disk.raw');

    const result = await restoreArchive(reader, target);
    t.true((await readFile(target)).equals(image));
    t.is(result.zeroChunks, 1);
    // A, B, C and the tail: one fetch each, although A occurs three times and B twice.
    t.is(source.fetchCount, 4);
    t.deepEqual([...source.fetches.values()], [1, 1, 1, 1]);
    // Written: every non-zero 64 KiB block of every occurrence (C's zero half stays a hole).
    t.is(result.bytesWritten, image.byteLength - CHUNK - CHUNK / 2);
    t.true((await stat(target)).blocks * 512 < image.byteLength - CHUNK);
    // Nothing went through the cache's memory; the decodes are counted.
    const stats = cache.stats();
    t.is(stats.cachedChunks, 0);
    t.is(stats.usedBytes, 0);
    t.is(stats.misses, 4);
    t.is(stats.bytesDecoded, 3 * CHUNK + 12_345);
    cache.checkInvariants();
  });
}

test('a dynamic archive (chunks at unaligned offsets) restores byte for byte, inline decoder too', async (t) => {
  const dir = await testDir(t);
  const block = randomBytes(5, 96 * KiB + 7);
  const data = Buffer.concat([block, randomBytes(6, 300 * KiB), block, Buffer.alloc(200 * KiB), block]);
  await backupInputs(dir, '100', [{ name: 'data.bin', data }], { dynamicAvgBytes: 64 * KiB });
  for (const workers of [0, 1]) {
    const cache = new ChunkCache({ cacheBytes: 4 * 1024 * KiB, workers });
    t.teardown(() => cache.close());
    const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
    const reader = await snapshot.openArchive('data.bin');
    t.is(reader.index.kind, 'dynamic');
    const target = join(dir, `data-${workers}.bin`);
    await restoreArchive(reader, target);
    t.true((await readFile(target)).equals(data), `workers: ${workers}`);
    t.is(cache.stats().cachedChunks, 0);
  }
});

test("a local datastore's blobs move to the decode thread without a copy (the source keeps none)", async (t) => {
  const dir = await testDir(t);
  const image = imageWithRepeats();
  await backupInputs(dir, '100', [{ name: 'drive-scsi0.img', data: image }], { chunkSizeBytes: CHUNK });
  /** Remembers each blob it hands out, to see whether the decode pool took its memory. */
  class WatchedSource extends LocalChunkSource {
    readonly given: Uint8Array[] = [];
    static async watch(storeDir: string): Promise<WatchedSource> {
      return new WatchedSource((await LocalChunkSource.open(storeDir)).store);
    }
    override async fetchChunk(digestHex: string, signal?: AbortSignal): Promise<Uint8Array> {
      const blob = await super.fetchChunk(digestHex, signal);
      this.given.push(blob);
      return blob;
    }
  }
  const source = await WatchedSource.watch(join(dir, 'store'));
  t.true(source.blobsAreTransferable);
  const cache = new ChunkCache({ cacheBytes: 4 * CHUNK, workers: 1 });
  t.teardown(() => cache.close());
  const reader = await (await openSnapshot({ source, snapshot: 'vm/100', cache })).openArchive(
    'drive-scsi0.img',
  );
  const target = join(dir, 'disk.raw');
  await restoreArchive(reader, target);
  t.true((await readFile(target)).equals(image));
  // Each blob (all over 4 KiB: whole ArrayBuffers of their own) was transferred: detached here.
  t.is(source.given.length, 4);
  t.deepEqual(
    source.given.map((blob) => blob.byteLength),
    [0, 0, 0, 0],
    'each blob was moved to the worker, not copied',
  );
});

test('the restore writes past the page cache (O_DIRECT) where it can: every 4096-aligned piece, the rest buffered; off by option', async (t) => {
  const dir = await testDir(t);
  const image = imageWithRepeats();
  await backupInputs(dir, '100', [{ name: 'drive-scsi0.img', data: image }], { chunkSizeBytes: CHUNK });
  const direct = await allowsDirectIo(dir);
  for (const directWrites of [true, false]) {
    const cache = new ChunkCache({ cacheBytes: 4 * CHUNK, workers: 2 });
    t.teardown(() => cache.close());
    const reader = await (
      await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache })
    ).openArchive('drive-scsi0.img');
    const target = join(dir, `disk-${directWrites}.raw`);
    const result = await restoreArchive(reader, target, { directWrites });
    t.true((await readFile(target)).equals(image), `directWrites: ${directWrites}`);
    t.is(result.bytesWritten, image.byteLength - CHUNK - CHUNK / 2);
    // The 12,345-byte tail: 3 pages go direct, its last 57 bytes through the page cache.
    const expected = directWrites && direct ? result.bytesWritten - (12_345 % 4096) : 0;
    t.is(
      result.directBytes,
      expected,
      `directWrites: ${directWrites}, file system allows O_DIRECT: ${direct}`,
    );
    t.true((await stat(target)).blocks * 512 < image.byteLength - CHUNK);
  }
});

test('a staged chunk whose O_DIRECT write the kernel refuses after the open goes through the page cache, whole', async (t) => {
  const dir = await testDir(t);
  const path = join(dir, 'out.raw');
  const handle = await open(path, 'w+');
  t.teardown(() => handle.close());
  await handle.truncate(3 * CHUNK);
  let descriptor: DirectDescriptor | undefined;
  const writer = await DirectWriter.open(path, handle, 1, CHUNK, (p) => {
    descriptor = DirectDescriptor.open(p);
    return descriptor;
  });
  if (writer === undefined) {
    // This file system refuses O_DIRECT at the open: restoreArchive writes buffered (test above).
    t.is(descriptor, undefined, 'open answers undefined only where O_DIRECT is refused');
    return;
  }
  t.teardown(() => writer.close());
  // Refused after the open: memory 16 bytes past a page boundary makes the kernel answer
  // EINVAL, which turns the descriptor off for every later write, aligned or not.
  const misaligned = new Uint8Array(pageAlignedSharedBuffer(2 * 64 * KiB).buffer, 16, 4 * KiB);
  t.is(await descriptor!.write([misaligned], 0), 0);
  const data = Buffer.concat([randomBytes(5, CHUNK / 2), Buffer.alloc(CHUNK / 4), randomBytes(6, CHUNK / 4)]);
  stageChunk(data, writer.target(0, true));
  t.is(await writer.write(0, [0, 2 * CHUNK]), 2 * (CHUNK - CHUNK / 4), 'the data extents, at both offsets');
  t.is(writer.directBytes, 0);
  const written = await readFile(path);
  t.true(written.subarray(0, CHUNK).equals(data));
  t.true(written.subarray(CHUNK, 2 * CHUNK).equals(Buffer.alloc(CHUNK)));
  t.true(written.subarray(2 * CHUNK).equals(data));
});
