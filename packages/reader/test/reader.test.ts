/*
 * CachedChunkReader and friends: pread edge cases, zero chunks without fetches, byte
 * ranges of read streams, readahead (on for sequential streams, off for random reads,
 * bounded by a quarter of the cache), snapshots and archives sharing a cache, restore.
 */
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toHex } from '@liverestore/format';
import { type ImageSpec, imageBytes, randomBytes, vmImageSet } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  type CachedChunkReader,
  ChunkCache,
  LocalChunkSource,
  openSnapshot,
  restoreArchive,
} from '../src/index.js';
import { chunkCacheInternals, MAX_READAHEAD_CACHE_FRACTION } from '../src/internal.js';
import {
  backupInputs,
  CountingSource,
  chunkPath,
  collect,
  KiB,
  MemorySource,
  MiB,
  prng,
  testDir,
  withTimeout,
} from './helpers.js';

const CHUNK = 256 * KiB;
/** Half zeros, so that an image has many all-zero chunks; the last chunk is partial. */
const SPEC: ImageSpec = { sizeBytes: 6 * MiB + 4321, seed: 24, mix: { zero: 0.5, text: 0.3, random: 0.2 } };

interface Opened {
  readonly dir: string;
  readonly source: CountingSource;
  readonly cache: ChunkCache;
  readonly reader: CachedChunkReader;
}

async function open(
  t: ExecutionContext,
  options: { cacheBytes?: number; spec?: ImageSpec; readaheadChunks?: number } = {},
): Promise<Opened> {
  const dir = await testDir(t);
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: options.spec ?? SPEC }], {
    chunkSizeBytes: CHUNK,
  });
  const source = new CountingSource(await LocalChunkSource.open(join(dir, 'store')));
  const cache = new ChunkCache({ cacheBytes: options.cacheBytes ?? 32 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: 'vm/100', cache });
  const reader = await snapshot.openArchive(
    'drive-scsi0.img',
    options.readaheadChunks === undefined ? {} : { readaheadChunks: options.readaheadChunks },
  );
  return { dir, source, cache, reader };
}

test('readAt follows pread: 0 at or past the end, short across the end, RangeError for bad offsets', async (t) => {
  const { reader } = await open(t);
  const size = SPEC.sizeBytes;
  t.is(reader.size, size);
  const filled = (n: number) => Buffer.alloc(n, 0xa5);

  t.is(await reader.readAt(filled(100), size), 0);
  t.is(await reader.readAt(filled(100), size + 1), 0);
  t.is(await reader.readAt(filled(100), size + 10 * MiB), 0);
  t.is(await reader.readAt(Buffer.alloc(0), 0), 0);
  t.is(await reader.readAt(Buffer.alloc(0), size + 5), 0);

  const across = filled(1000);
  t.is(await reader.readAt(across, size - 10), 10);
  t.true(across.subarray(0, 10).equals(imageBytes(SPEC, size - 10, 10)));
  t.true(
    across.subarray(10).every((b) => b === 0xa5),
    'bytes past the short count are untouched',
  );

  const last = filled(1);
  t.is(await reader.readAt(last, size - 1), 1);
  t.is(last[0], imageBytes(SPEC, size - 1, 1)[0]);

  for (const offset of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -0.5]) {
    await t.throwsAsync(reader.readAt(filled(10), offset), { instanceOf: RangeError }, `offset ${offset}`);
  }
  // A whole-image read in one call.
  const whole = Buffer.alloc(size + 100);
  t.is(await reader.readAt(whole, 0), size);
  t.true(whole.subarray(0, size).equals(imageBytes(SPEC, 0, size)));
});

test('all-zero chunks are served without any fetch', async (t) => {
  // Readahead off: reading zero chunks in order is a sequential stream, and its readahead
  // would rightly fetch the data chunks after them.
  const { reader, source, cache } = await open(t, { readaheadChunks: 0 });
  const zero: number[] = [];
  const data = new Set<string>();
  for (let i = 0; i < reader.index.chunkCount; i++) {
    if (reader.isZeroChunk(i)) zero.push(i);
    else data.add(toHex(reader.index.digestAt(i)));
  }
  t.true(zero.length >= 3, `the test image has zero chunks (${zero.length})`);
  t.true(data.size >= 3, `the test image has data chunks (${data.size})`);
  for (const i of zero) {
    const start = reader.index.chunkStart(i);
    const length = reader.index.chunkEnd(i) - start;
    const buffer = Buffer.alloc(length, 1);
    t.is(await reader.readAt(buffer, start), length);
    t.true(
      buffer.every((b) => b === 0),
      `chunk ${i} reads as zeros`,
    );
    // Also check against the source: a chunk the reader takes for zero must really be zero.
    t.true(buffer.equals(imageBytes(SPEC, start, length)));
  }
  t.is(source.fetchCount, 0);
  t.is(cache.stats().misses + cache.stats().hits, 0, 'zero chunks never reach the cache');
  const whole = await collect(reader.createReadStream({ highWaterMark: 3 * CHUNK + 7 }));
  t.true(whole.equals(imageBytes(SPEC, 0, SPEC.sizeBytes)));
  t.is(source.fetchCount, data.size, 'one fetch per distinct data chunk');
});

test('createReadStream({start, end}) yields exactly bytes start..end (inclusive)', async (t) => {
  const { reader } = await open(t, { readaheadChunks: 4 });
  const size = SPEC.sizeBytes;
  const ranges: [number | undefined, number | undefined][] = [
    [undefined, undefined],
    [0, 0],
    [0, CHUNK - 1],
    [CHUNK - 1, CHUNK],
    [12_345, 3 * CHUNK + 17],
    [size - 4321 - 10, size - 1], // the last, partial chunk and a bit before it
    [size - 1, size - 1],
    [size - 100, size + 5000], // end past the size: clipped
    [7 * CHUNK, undefined],
    [undefined, 2 * CHUNK + 5],
  ];
  for (const [start, end] of ranges) {
    const from = start ?? 0;
    const to = Math.min(size - 1, end ?? size - 1);
    const options = { ...(start === undefined ? {} : { start }), ...(end === undefined ? {} : { end }) };
    for (const highWaterMark of [64 * KiB, 1000]) {
      if (highWaterMark === 1000 && to - from > 2 * MiB) continue;
      const got = await collect(reader.createReadStream({ ...options, highWaterMark }));
      t.true(
        got.equals(imageBytes(SPEC, from, to - from + 1)),
        `range ${start}..${end} hwm ${highWaterMark}`,
      );
    }
  }
  t.is((await collect(reader.createReadStream({ start: 10, end: 9 }))).length, 0);
  t.is((await collect(reader.createReadStream({ start: size }))).length, 0);
  t.is((await collect(reader.createReadStream({ start: size + 10 }))).length, 0);
  t.throws(() => reader.createReadStream({ start: -1 }), { instanceOf: RangeError });
  t.throws(() => reader.createReadStream({ start: 0.5 }), { instanceOf: RangeError });
  t.throws(() => reader.createReadStream({ highWaterMark: 0 }), { instanceOf: RangeError });
});

test('createReadStream rejects a bad end the way it rejects a bad start', async (t) => {
  const { reader } = await open(t);
  t.throws(() => reader.createReadStream({ end: Number.NaN }), { instanceOf: RangeError });
});

test('a sequential stream triggers readahead; random reads on a fresh cache do not', async (t) => {
  const spec: ImageSpec = { ...SPEC, mix: { text: 0.6, random: 0.4 } };
  const sequential = await open(t, { spec });
  t.is(sequential.reader.readaheadChunks, 8);
  const got = await collect(sequential.reader.createReadStream({ highWaterMark: 64 * KiB }));
  t.true(got.equals(imageBytes(spec, 0, spec.sizeBytes)));
  const seqStats = sequential.cache.stats();
  t.true(seqStats.prefetches > 0, `prefetches: ${seqStats.prefetches}`);
  // Readahead loads are real loads: the stream found most chunks loaded or loading.
  t.true(seqStats.hits + seqStats.dedupJoins > 0);

  const random = await open(t, { spec });
  const rand = prng(17);
  for (let i = 0; i < 60; i++) {
    const offset = Math.floor(rand() * SPEC.sizeBytes);
    const length = 1 + Math.floor(rand() * 100 * KiB);
    const buffer = Buffer.alloc(length);
    const n = await random.reader.readAt(buffer, offset);
    t.true(buffer.subarray(0, n).equals(imageBytes(spec, offset, n)));
  }
  t.is(random.cache.stats().prefetches, 0);
});

test('the readahead window of a fixed archive never exceeds a quarter of the cache', async (t) => {
  const dir = await testDir(t);
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: SPEC }], { chunkSizeBytes: CHUNK });
  for (const cacheBytes of [CHUNK, 2 * CHUNK, 4 * CHUNK, 1 * MiB + 5, 3 * MiB, 8 * MiB, 256 * MiB]) {
    const cache = new ChunkCache({ cacheBytes, workers: 0 });
    const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
    for (const readaheadChunks of [undefined, 0, 1, 100]) {
      const reader = await snapshot.openArchive(
        'drive-scsi0',
        readaheadChunks === undefined ? {} : { readaheadChunks },
      );
      const window = reader.readaheadChunks;
      t.true(
        window * CHUNK <= cache.capacityBytes * MAX_READAHEAD_CACHE_FRACTION,
        `cache ${cacheBytes}: ${window}`,
      );
      t.true(window <= (readaheadChunks ?? 8));
    }
    await snapshot.close();
    await cache.close();
  }
});

test('the readahead window of a dynamic archive never exceeds a quarter of the cache', async (t) => {
  // Dynamic chunks vary from avg/4 to 4 × avg: the window must be bounded by the chunks
  // it covers, not by the first chunk's length.
  const dir = await testDir(t);
  const data = randomBytes(4, 8 * MiB);
  await backupInputs(dir, '100', [{ name: 'data.bin', data }], { dynamicAvgBytes: 64 * KiB });
  const cache = new ChunkCache({ cacheBytes: 2 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
  const reader = await snapshot.openArchive('data.bin');
  const index = reader.index;
  const lengths = Array.from({ length: index.chunkCount }, (_, i) => index.chunkEnd(i) - index.chunkStart(i));
  const window = reader.readaheadChunks;
  let worst = 0;
  for (let i = 0; i + window <= lengths.length; i++) {
    worst = Math.max(
      worst,
      lengths.slice(i, i + window).reduce((a, b) => a + b, 0),
    );
  }
  t.log(
    `first chunk ${lengths[0]}, largest ${Math.max(...lengths)}, window ${window} chunks, worst ${worst} bytes`,
  );
  t.true(
    worst <= cache.capacityBytes * MAX_READAHEAD_CACHE_FRACTION,
    `a window of ${window} chunks spans up to ${worst} bytes of a ${cache.capacityBytes}-byte cache`,
  );
  // And the reads themselves are right.
  const got = await collect(reader.createReadStream());
  t.true(got.equals(data));
});

test("openSnapshot('vm/100') opens the latest snapshot; a full reference opens an older one", async (t) => {
  const dir = await testDir(t);
  const [older, newer] = [
    { sizeBytes: MiB + 10, seed: 1 },
    { sizeBytes: 2 * MiB + 20, seed: 2 },
  ] as const;
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: older }], {
    chunkSizeBytes: CHUNK,
    backupTime: 1_700_000_000,
  });
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: newer }], {
    chunkSizeBytes: CHUNK,
    backupTime: 1_700_000_100,
  });
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const store = join(dir, 'store');
  const latest = await openSnapshot({ source: store, snapshot: 'vm/100', cache });
  t.is(latest.ref.time, 1_700_000_100);
  const latestReader = await latest.openArchive('drive-scsi0');
  t.is(latestReader.size, newer.sizeBytes);
  t.true((await collect(latestReader.createReadStream())).equals(imageBytes(newer, 0, newer.sizeBytes)));
  const old = await openSnapshot({ source: store, snapshot: 'vm/100/2023-11-14T22:13:20Z', cache });
  const oldReader = await old.openArchive('drive-scsi0.img.fidx');
  t.true((await collect(oldReader.createReadStream())).equals(imageBytes(older, 0, older.sizeBytes)));
  await t.throwsAsync(openSnapshot({ source: store, snapshot: 'vm/999', cache }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
});

test('an unknown archive fails with ERR_LR_ARCHIVE_NOT_FOUND', async (t) => {
  const { dir } = await open(t);
  const cache = new ChunkCache({ cacheBytes: MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
  for (const name of ['drive-scsi9', 'drive-scsi0.raw', 'notes.txt']) {
    await t.throwsAsync(snapshot.openArchive(name), { code: 'ERR_LR_ARCHIVE_NOT_FOUND' }, name);
  }
  t.deepEqual(
    snapshot.archives.map((a) => a.name),
    ['drive-scsi0.img'],
  );
});

test('many snapshots and archives share one small cache', async (t) => {
  const dir = await testDir(t);
  const groups = ['201', '202', '203'];
  const specs = new Map<string, ImageSpec[]>();
  for (const [g, id] of groups.entries()) {
    const drives = vmImageSet(300 + g, { drives: 2, sizeBytes: [3 * MiB + g, 2 * MiB + 777] });
    specs.set(
      id,
      drives.map((d) => d.spec),
    );
    await backupInputs(
      dir,
      id,
      drives.map((d) => ({ name: d.name, spec: d.spec })),
      { chunkSizeBytes: g === 0 ? 64 * KiB : CHUNK },
    );
  }
  const cache = new ChunkCache({ cacheBytes: 2 * MiB, workers: 2 });
  t.teardown(() => cache.close());
  let maxUsed = 0;
  const sampler = setInterval(() => {
    maxUsed = Math.max(maxUsed, cache.stats().usedBytes);
  }, 1);
  t.teardown(() => clearInterval(sampler));
  const jobs: Promise<void>[] = [];
  for (const id of groups) {
    const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: `vm/${id}`, cache });
    t.is(snapshot.cache, cache);
    for (const [i, spec] of specs.get(id)!.entries()) {
      const reader = await snapshot.openArchive(`drive-scsi${i}`);
      jobs.push(
        (async () => {
          const got = await collect(reader.createReadStream({ highWaterMark: 100 * KiB }));
          t.true(got.equals(imageBytes(spec, 0, spec.sizeBytes)), `vm/${id} drive-scsi${i}`);
        })(),
      );
    }
  }
  await withTimeout(Promise.all(jobs), 30_000, 'six streams on one cache');
  t.true(maxUsed <= cache.capacityBytes);
  t.true(cache.stats().evictions > 0);
  cache.checkInvariants();
});

test('restoreArchive writes the exact image, keeps zero chunks as holes, leaves no temp file', async (t) => {
  const { dir, reader } = await open(t, { cacheBytes: 4 * MiB });
  const outDir = join(dir, 'out');
  await mkdir(outDir);
  const target = join(outDir, 'restored.img');
  const progress: number[] = [];
  const result = await restoreArchive(reader, target, { onProgress: (p) => progress.push(p.bytesDone) });
  const restored = await readFile(target);
  t.true(restored.equals(imageBytes(SPEC, 0, SPEC.sizeBytes)));
  t.deepEqual(await readdir(outDir), ['restored.img']);
  t.is(result.sizeBytes, SPEC.sizeBytes);
  let zeroChunks = 0;
  for (let i = 0; i < reader.index.chunkCount; i++) if (reader.isZeroChunk(i)) zeroChunks++;
  t.is(result.zeroChunks, zeroChunks);
  t.true(zeroChunks > 0);
  // Bytes in 64 KiB blocks of the image that are not all zero: what a sparse restore writes.
  let dataBytes = 0;
  for (let at = 0; at < SPEC.sizeBytes; at += 64 * KiB) {
    const block = restored.subarray(at, Math.min(at + 64 * KiB, SPEC.sizeBytes));
    if (!block.every((b) => b === 0)) dataBytes += block.length;
  }
  t.is(result.bytesWritten, dataBytes);
  const st = await stat(target);
  t.is(st.size, SPEC.sizeBytes);
  t.true(
    st.blocks * 512 <= dataBytes + 64 * KiB,
    `allocated ${st.blocks * 512} bytes for ${dataBytes} non-zero bytes`,
  );
  t.is(progress.at(-1), SPEC.sizeBytes);

  // Restoring over an existing file replaces it.
  await writeFile(target, 'old contents');
  await restoreArchive(reader, target);
  t.true((await readFile(target)).equals(restored));
  t.deepEqual(await readdir(outDir), ['restored.img']);
});

test('restoreArchive into a directory fails with ERR_LR_OUTPUT_INVALID; a failed restore leaves nothing', async (t) => {
  const { dir, reader } = await open(t, { cacheBytes: 4 * MiB });
  await t.throwsAsync(restoreArchive(reader, dir), { code: 'ERR_LR_OUTPUT_INVALID' });
  await t.throwsAsync(restoreArchive(reader, join(dir, 'no-such-dir', 'x.img')), {
    code: 'ERR_LR_OUTPUT_INVALID',
  });
  await t.throwsAsync(restoreArchive(reader, join(dir, 'x.img'), { concurrency: 0 }), {
    instanceOf: RangeError,
  });

  // A corrupted chunk fails the restore; neither the target nor a temp file remains.
  let corrupted = false;
  for (let i = 0; i < reader.index.chunkCount && !corrupted; i++) {
    if (reader.isZeroChunk(i)) continue;
    const file = chunkPath(join(dir, 'store'), toHex(reader.index.digestAt(i)));
    const blob = await readFile(file);
    blob[blob.length - 1]! ^= 1;
    await writeFile(file, blob);
    corrupted = true;
  }
  const outDir = join(dir, 'out');
  await mkdir(outDir);
  await t.throwsAsync(restoreArchive(reader, join(outDir, 'x.img')), { code: 'ERR_LR_BLOB_CRC_MISMATCH' });
  t.deepEqual(await readdir(outDir), []);
});

test('an aborted restore rejects with the abort reason and leaves neither target nor temp file', async (t) => {
  const { dir, reader, source } = await open(t, { cacheBytes: 4 * MiB });
  const outDir = join(dir, 'out');
  await mkdir(outDir);
  const controller = new AbortController();
  const reason = new Error('operator cancelled');
  source.hold();
  const restore = restoreArchive(reader, join(outDir, 'x.img'), {
    signal: controller.signal,
    concurrency: 3,
  });
  await withTimeout(
    (async () => {
      while (source.waiting === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    })(),
    5000,
    'restore to start fetching',
  );
  controller.abort(reason);
  source.release();
  // restoreArchive rejects only once every lane has stopped and the temp file is removed.
  t.is(await restore.catch((err: unknown) => err), reason);
  t.deepEqual(await readdir(outDir), []);
});

test('a closed snapshot refuses to open archives; a source of an unknown scheme is refused with a clear code', async (t) => {
  const { dir } = await open(t);
  const cache = new ChunkCache({ cacheBytes: MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
  await snapshot.close();
  await t.throwsAsync(snapshot.openArchive('drive-scsi0'), { code: 'ERR_LR_SNAPSHOT_CLOSED' });
  await t.throwsAsync(openSnapshot({ source: 'ftp://backup.invalid/store', snapshot: 'vm/100', cache }), {
    code: 'ERR_LR_SOURCE_UNSUPPORTED',
  });
});

test('an empty image and an empty file read as empty and restore to empty files', async (t) => {
  const dir = await testDir(t);
  await backupInputs(
    dir,
    '100',
    [
      { name: 'drive-scsi0', spec: { sizeBytes: 0, seed: 1 } },
      { name: 'empty.bin', data: new Uint8Array(0) },
    ],
    { chunkSizeBytes: CHUNK },
  );
  const cache = new ChunkCache({ cacheBytes: MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
  for (const name of ['drive-scsi0', 'empty.bin']) {
    const reader = await snapshot.openArchive(name);
    t.is(reader.size, 0);
    t.is(await reader.readAt(Buffer.alloc(10), 0), 0);
    t.is((await collect(reader.createReadStream())).length, 0);
    const target = join(dir, `${name}.out`);
    t.is((await restoreArchive(reader, target)).sizeBytes, 0);
    t.is((await stat(target)).size, 0);
  }
});

test('tryReadAtSync serves cached and zero chunks at once, and nothing else', async (t) => {
  const { reader, source, cache } = await open(t, { readaheadChunks: 0 });
  const firstData = Array.from({ length: reader.index.chunkCount }, (_, i) => i).find(
    (i) => !reader.isZeroChunk(i),
  )!;
  const zeroChunk = Array.from({ length: reader.index.chunkCount }, (_, i) => i).find((i) =>
    reader.isZeroChunk(i),
  )!;
  const start = reader.index.chunkStart(firstData);
  const buffer = Buffer.alloc(4096, 7);
  t.false(reader.tryReadAtSync(buffer, start + 100), 'not cached yet: no waiting, no fetch');
  t.is(source.fetchCount, 0);
  t.is(cache.stats().misses, 0, 'a failed sync attempt does not count as a miss');
  await reader.readAt(Buffer.alloc(1), start);
  const hits = cache.stats().hits;
  t.true(reader.tryReadAtSync(buffer, start + 100));
  t.true(buffer.equals(imageBytes(SPEC, start + 100, 4096)));
  t.is(cache.stats().hits, hits + 1);
  // Zero chunks need no cache; a range past the end is refused rather than shortened.
  const zeros = Buffer.alloc(1000, 9);
  t.true(reader.tryReadAtSync(zeros, reader.index.chunkStart(zeroChunk)));
  t.true(zeros.every((b) => b === 0));
  t.false(reader.tryReadAtSync(Buffer.alloc(2), reader.size - 1));
  t.true(reader.tryReadAtSync(Buffer.alloc(0), reader.size));
  cache.checkInvariants();
  t.is(source.fetchCount, 1);
});

test('reads continuing a sequential stream fetch in the background; others are urgent (readahead on or off)', async (t) => {
  for (const readaheadChunks of [0, 2]) {
    const { reader, source } = await open(t, {
      spec: { sizeBytes: 16 * CHUNK, seed: 5, mix: { random: 1 } },
      readaheadChunks,
    });
    const buffer = Buffer.alloc(CHUNK);
    await reader.readAt(buffer, 0); // a new stream: someone waits, nothing to go on
    await reader.readAt(buffer, CHUNK); // continues it: a stream from now on (a random read may do this once)
    await reader.readAt(buffer, 2 * CHUNK); // the stream goes on: sequential
    await reader.readAt(buffer, 11 * CHUNK); // a random read
    const urgency = (i: number): boolean | undefined => {
      const hex = toHex(reader.index.digestAt(i));
      return source.log.find((f) => f.digestHex === hex)?.urgent;
    };
    t.true(urgency(0), `readahead ${readaheadChunks}: the first read`);
    t.true(urgency(1), `readahead ${readaheadChunks}: the second read of the stream`);
    t.false(urgency(2), `readahead ${readaheadChunks}: the third read of the stream`);
    t.true(urgency(11), `readahead ${readaheadChunks}: a random read`);
    // Readahead loads are background too.
    if (readaheadChunks > 0) t.true(source.log.filter((f) => !f.urgent).length > 2);
  }
});

/**
 * What the urgency tests share: a MemorySource of 1 MiB incompressible chunks, a cache
 * with one decode thread, and `track`, which acquires a chunk and records the order in
 * which the leases arrive.
 */
function urgencySetup(t: ExecutionContext) {
  const source = new MemorySource();
  const add = (seed: number): string =>
    source.add(imageBytes({ sizeBytes: MiB, seed, mix: { random: 1 } }, 0, MiB), undefined, 'none');
  const cache = new ChunkCache({ cacheBytes: 8 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const request = (digestHex: string, background: boolean) => ({
    digestHex,
    length: MiB,
    source,
    background,
  });
  const order: string[] = [];
  const track = async (hex: string, background: boolean): Promise<void> => {
    const lease = await cache.acquire(request(hex, background));
    order.push(hex);
    cache.release(lease);
  };
  /** Resolves once `check` holds, polling each turn of the event loop (bounded by ava's timeout). */
  const until = async (check: () => boolean, what: string): Promise<void> => {
    for (let turns = 0; !check(); turns++) {
      if (turns > 100_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  /** Resolves once the source holds a fetch of `hex` (the load got its slot and asked). */
  const fetching = (hex: string): Promise<void> =>
    until(() => source.pending.some((p) => p.digestHex === hex), `the fetch of ${hex}`);
  return { source, add, cache, request, order, track, fetching, until };
}

test('an urgent reader joining a background load raises its fetch hint, and decodes go urgent first', async (t) => {
  const { source, add, cache, request, order, track, fetching } = urgencySetup(t);
  const [a, b, c, d] = [1, 2, 3, 4].map(add);

  source.holdAll = true;
  const joined = [cache.acquire(request(a!, true))];
  await fetching(a!); // the fetch starts once the slot is allocated
  t.false(source.hints.get(a!)?.urgent, 'a sequential read starts a background fetch');
  joined.push(cache.acquire(request(a!, false)));
  t.true(source.hints.get(a!)?.urgent, 'a waiting random read makes it urgent');
  for (const p of [...source.pending]) p.complete();
  for (const lease of await Promise.all(joined)) cache.release(lease);

  // One decode thread, busy with b (readahead) when c (background) and d (urgent) arrive:
  // d is decoded before c although it arrived last.
  t.true(cache.prefetch(request(b!, true)));
  await fetching(b!);
  t.false(source.hints.get(b!)?.urgent, 'readahead is background');
  const loads = [track(c!, true), track(d!, false)];
  await fetching(c!);
  await fetching(d!);
  for (const p of [...source.pending]) p.complete(); // b, c, d in that order
  await Promise.all(loads);
  t.deepEqual(order, [d, c]);
  t.true(cache.has(b!));
});

test('background decodes wait while an urgent blob is on its way; an urgent fetch that fails lets them go', async (t) => {
  const { source, add, cache, request, order, track, fetching, until } = urgencySetup(t);
  const decodes = chunkCacheInternals(cache).decodes;
  const [b, u, v] = [5, 6, 7].map(add);
  const pendingOf = (hex: string) => source.pending.find((p) => p.digestHex === hex)!;

  cache.release(await cache.acquire(request(add(9), false))); // the thread is up
  source.holdAll = true;
  const loads = [track(b!, true), track(u!, false)];
  await fetching(b!);
  await fetching(u!);
  pendingOf(b!).complete(); // the background blob arrives while the urgent one is on its way
  // Observed, not slept on: b's decode is queued while the one thread is free.
  await until(() => decodes.queued === 1 && decodes.running === 0, "b's decode to be held");
  t.false(cache.has(b!), 'its decode waits although the thread is free');
  pendingOf(u!).complete();
  await Promise.all(loads);
  t.deepEqual(order, [u, b], 'the urgent chunk is decoded first');

  source.failNext(v!);
  const w = add(8);
  const background = track(w, true);
  const failing = cache.acquire(request(v!, false));
  await fetching(w);
  await fetching(v!);
  pendingOf(w).complete();
  await until(() => decodes.queued === 1 && decodes.running === 0, "w's decode to be held");
  t.false(cache.has(w));
  pendingOf(v!).complete();
  await t.throwsAsync(failing, { code: 'ERR_TEST_FETCH_FAILED' });
  await background;
  t.true(cache.has(w), 'the held decode ran once no urgent fetch was left');
});
