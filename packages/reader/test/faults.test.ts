/*
 * Faults on the read path: corrupted, substituted and missing chunks, a decode worker
 * that dies mid-task, encrypted snapshots without and with the key. Each fault must fail
 * exactly the reads that need the bad chunk, with a stable code, never be cached, and
 * leave the cache working once the fault is gone.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CryptConfig, chunkDigest, encodeChunk, toHex } from '@liverestore/format';
import { type ImageSpec, imageBytes, randomBytes, vmImageSet } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import type { Piscina } from 'piscina';
import {
  type CachedChunkReader,
  ChunkCache,
  type ChunkSource,
  LocalChunkSource,
  openSnapshot,
  type Snapshot,
} from '../src/index.js';
import {
  backupInputs,
  CountingSource,
  chunkPath,
  collect,
  KiB,
  MemorySource,
  MiB,
  runRemoteReader,
  testDir,
  uniqueDataChunk,
  withTimeout,
} from './helpers.js';

const CHUNK = 256 * KiB;

/** The pool decoder of a cache with `workers > 0`, as fault tests reach into it. */
interface PoolDecoder {
  readonly pool: Piscina;
  decode(task: object): Promise<unknown>;
}

interface Store {
  readonly storeDir: string;
  readonly spec: ImageSpec;
  readonly source: CountingSource;
  readonly cache: ChunkCache;
  readonly snapshot: Snapshot;
  readonly reader: CachedChunkReader;
}

/** An image (2 MiB by default) in 256 KiB chunks, opened through a counting source and a fresh cache. */
async function openStore(
  t: ExecutionContext,
  options: {
    workers?: number;
    crypt?: CryptConfig;
    spec?: ImageSpec;
    readaheadChunks?: number;
  } = {},
): Promise<Store> {
  const dir = await testDir(t);
  const spec = options.spec ?? vmImageSet(31, { drives: 1, sizeBytes: 2 * MiB + 1000 })[0]!.spec;
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec }], {
    chunkSizeBytes: CHUNK,
    ...(options.crypt === undefined ? {} : { crypt: options.crypt }),
  });
  const storeDir = join(dir, 'store');
  const source = new CountingSource(await LocalChunkSource.open(storeDir));
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: options.workers ?? 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: 'vm/100', cache, crypt: options.crypt });
  const reader = await snapshot.openArchive(
    'drive-scsi0',
    options.readaheadChunks === undefined ? {} : { readaheadChunks: options.readaheadChunks },
  );
  return { storeDir, spec, source, cache, snapshot, reader };
}

async function readRange(store: Store, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const n = await store.reader.readAt(buffer, offset);
  if (n !== length) throw new Error(`short read: ${n} of ${length}`);
  return buffer;
}

/** Reads that do not touch chunk `i`: whole neighbours and a range within the first chunk. */
function rangesAvoiding(i: number): { offset: number; length: number }[] {
  return [
    { offset: 0, length: 1000 },
    { offset: (i - 1) * CHUNK, length: CHUNK },
    { offset: (i + 1) * CHUNK, length: CHUNK },
    { offset: (i + 1) * CHUNK + 5, length: CHUNK + 100 },
  ];
}

test('a corrupted chunk fails exactly the reads that touch it, is never cached, and reads work after repair', async (t) => {
  const store = await openStore(t);
  const { i, hex } = uniqueDataChunk(store.reader.index, store.reader);
  const file = chunkPath(store.storeDir, hex);
  const original = await readFile(file);
  const corrupt = Buffer.from(original);
  corrupt[corrupt.length - 1]! ^= 0x40;
  await writeFile(file, corrupt);

  // A read crossing into the bad chunk, and one inside it.
  for (const [offset, length] of [
    [i * CHUNK - 100, 200],
    [i * CHUNK + 10, 20],
  ] as const) {
    const err = await t.throwsAsync(readRange(store, offset, length));
    t.is((err as { code?: string }).code, 'ERR_LR_BLOB_CRC_MISMATCH');
    t.true(err!.message.includes(hex), `message names the digest: ${err!.message}`);
  }
  t.is(store.source.fetches.get(hex), 2, 'the failed chunk was fetched again by the second read');
  t.is(store.cache.stats().failures, 2);
  t.false(store.cache.has(hex));

  for (const { offset, length } of rangesAvoiding(i)) {
    t.true((await readRange(store, offset, length)).equals(imageBytes(store.spec, offset, length)));
  }
  t.is(store.cache.stats().failures, 2, 'reads not touching the chunk did not fail');

  await writeFile(file, original);
  const offset = i * CHUNK - 100;
  t.true((await readRange(store, offset, CHUNK)).equals(imageBytes(store.spec, offset, CHUNK)));
  t.is(store.source.fetches.get(hex), 3);
  t.true(store.cache.has(hex));
  store.cache.checkInvariants();
});

test('a corrupted chunk fails a worker-thread reader with the same code, other reads there succeed', async (t) => {
  const store = await openStore(t);
  const { i, hex } = uniqueDataChunk(store.reader.index, store.reader);
  const file = chunkPath(store.storeDir, hex);
  const original = await readFile(file);
  const corrupt = Buffer.from(original);
  corrupt[corrupt.length - 1]! ^= 0x01;
  await writeFile(file, corrupt);

  const report = await withTimeout(
    runRemoteReader(store.snapshot, 'drive-scsi0', {
      spec: store.spec,
      seed: 1,
      concurrency: 1,
      reads: 0,
      maxReadBytes: MiB,
      ranges: [
        { offset: i * CHUNK + 1, length: 10 },
        ...rangesAvoiding(i),
        { offset: i * CHUNK - 1, length: 2 },
      ],
    }),
    20_000,
    'worker-thread reader',
  );
  const [bad, ...rest] = report.results;
  const last = rest.pop()!;
  for (const failed of [bad!, last]) {
    t.is(failed.code, 'ERR_LR_BLOB_CRC_MISMATCH', JSON.stringify(failed));
    t.true(failed.message?.includes(hex) === true, failed.message);
  }
  t.deepEqual(
    rest.filter((r) => r.bytesOk !== true),
    [],
  );
  t.is(store.source.fetches.get(hex), 2, 'not cached: each failed read fetched it');

  await writeFile(file, original);
  const again = await runRemoteReader(store.snapshot, 'drive-scsi0', {
    spec: store.spec,
    seed: 1,
    concurrency: 1,
    reads: 0,
    maxReadBytes: MiB,
    ranges: [{ offset: i * CHUNK + 1, length: 10 }],
  });
  t.is(again.results[0]?.bytesOk, true, JSON.stringify(again.results[0]));
});

test('a valid blob of other data stored under a digest fails with ERR_LR_DIGEST_MISMATCH', async (t) => {
  const store = await openStore(t);
  const { i, hex } = uniqueDataChunk(store.reader.index, store.reader);
  const impostor = encodeChunk(randomBytes(99, CHUNK)).blob;
  await writeFile(chunkPath(store.storeDir, hex), impostor);
  const err = await t.throwsAsync(readRange(store, i * CHUNK, 16));
  t.is((err as { code?: string }).code, 'ERR_LR_DIGEST_MISMATCH');
  t.true(err!.message.includes(hex), err!.message);
  t.false(store.cache.has(hex));
  const offset = (i + 1) * CHUNK;
  t.true((await readRange(store, offset, 100)).equals(imageBytes(store.spec, offset, 100)));
  store.cache.checkInvariants();
});

test('a missing chunk fails with ERR_LR_CHUNK_MISSING and the next read tries again', async (t) => {
  const store = await openStore(t);
  const { i, hex } = uniqueDataChunk(store.reader.index, store.reader);
  const file = chunkPath(store.storeDir, hex);
  const original = await readFile(file);
  await rm(file);
  const err = await t.throwsAsync(readRange(store, i * CHUNK + 7, 3));
  t.is((err as { code?: string }).code, 'ERR_LR_CHUNK_MISSING');
  t.true(err!.message.includes(hex), err!.message);
  await writeFile(file, original);
  const offset = i * CHUNK + 7;
  t.true((await readRange(store, offset, 3)).equals(imageBytes(store.spec, offset, 3)));
  t.is(store.source.fetches.get(hex), 2);
});

test('a decode worker killed mid-task fails that read with ERR_LR_DECODE_WORKER_DIED, and the pool recovers', async (t) => {
  const store = await openStore(t, { workers: 1 });
  const decoder = store.cache.decoder as unknown as PoolDecoder;
  const threads = decoder.pool.threads;
  t.is(threads.length, 1);
  const original = decoder.decode.bind(decoder) as (task: object) => Promise<unknown>;
  let kills = 0;
  // Terminate the only worker right after a decode task has been handed to it.
  decoder.decode = (task: object) => {
    const pending = original(task);
    if (kills++ === 0) for (const worker of decoder.pool.threads) void worker.terminate();
    return pending;
  };
  const { i, hex } = uniqueDataChunk(store.reader.index, store.reader);
  const err = await withTimeout(
    readRange(store, i * CHUNK, 100).then(
      () => undefined,
      (e: unknown) => e,
    ),
    10_000,
    'read whose decode worker was killed',
  );
  t.is((err as { code?: string } | undefined)?.code, 'ERR_LR_DECODE_WORKER_DIED');
  t.true((err as Error).message.includes(hex));
  t.false(store.cache.has(hex));
  t.is(store.cache.stats().failures, 1);
  store.cache.checkInvariants();

  const again = await withTimeout(readRange(store, i * CHUNK, 100), 10_000, 'read after the worker died');
  t.true(again.equals(imageBytes(store.spec, i * CHUNK, 100)));
  t.is(decoder.pool.threads.length, 1, 'the pool replaced its worker');
  t.is(store.source.fetches.get(hex), 2);
});

test('a decode worker terminated while it decodes a large chunk fails that read, not hangs it', async (t) => {
  // A big uncompressed chunk keeps the only worker busy (CRC-32 and SHA-256 of 64 MiB)
  // for tens of milliseconds: terminate it once the task has been handed over.
  const source = new MemorySource();
  const data = randomBytes(5, 64 * MiB);
  const hex = source.add(data, undefined, 'none');
  const cache = new ChunkCache({ cacheBytes: 64 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const pool = (cache.decoder as unknown as PoolDecoder).pool;
  const acquire = cache.acquire({ digestHex: hex, length: data.byteLength, source });
  while (source.fetchCount === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  await new Promise<void>((resolve) => setImmediate(resolve));
  for (const worker of pool.threads) void worker.terminate();
  const outcome = await withTimeout(
    acquire.then(
      (lease) => {
        cache.release(lease);
        return 'decoded before the worker was terminated';
      },
      (err: unknown) => (err as { code?: string }).code,
    ),
    10_000,
    'acquire whose decode worker was terminated',
  );
  t.is(outcome, 'ERR_LR_DECODE_WORKER_DIED');
  t.false(cache.has(hex));
  const lease = await withTimeout(
    cache.acquire({ digestHex: hex, length: data.byteLength, source }),
    10_000,
    'acquire after the worker was terminated',
  );
  const tail = new Uint8Array(4096);
  cache.copyOut(lease, data.byteLength - 4096, tail, 0, 4096);
  cache.release(lease);
  t.true(Buffer.from(tail).equals(data.subarray(data.byteLength - 4096)));
  cache.checkInvariants();
});

test('an encrypted archive needs its key: ERR_LR_KEY_REQUIRED without it', async (t) => {
  const crypt = CryptConfig.generate();
  const dir = await testDir(t);
  const [drive] = vmImageSet(8, { drives: 1, sizeBytes: MiB });
  await backupInputs(dir, '100', [{ name: 'drive-scsi0', spec: drive!.spec }], {
    chunkSizeBytes: CHUNK,
    crypt,
  });
  const cache = new ChunkCache({ cacheBytes: 4 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  await t.throwsAsync(
    async () => {
      const snapshot = await openSnapshot({ source: join(dir, 'store'), snapshot: 'vm/100', cache });
      await snapshot.openArchive('drive-scsi0');
    },
    { code: 'ERR_LR_KEY_REQUIRED' },
  );
});

test('an encrypted archive reads correctly with its key, and its zero chunks are served without a fetch', async (t) => {
  const crypt = CryptConfig.generate();
  const store = await openStore(t, {
    crypt,
    workers: 2,
    readaheadChunks: 0, // zero chunks read in order would start readahead of the data after them
    spec: { sizeBytes: 6 * MiB + 1000, seed: 24, mix: { zero: 0.5, text: 0.3, random: 0.2 } },
  });
  const { reader, spec, source } = store;
  const zeroChunks: number[] = [];
  const dataChunks = new Set<string>();
  for (let i = 0; i < reader.index.chunkCount; i++) {
    const hex = toHex(reader.index.digestAt(i));
    const length = reader.index.chunkEnd(i) - reader.index.chunkStart(i);
    const zeroHex = toHex(chunkDigest(new Uint8Array(length), crypt));
    if (hex === zeroHex) zeroChunks.push(i);
    else dataChunks.add(hex);
    t.is(reader.isZeroChunk(i), hex === zeroHex, `chunk ${i}`);
  }
  t.true(zeroChunks.length > 0, 'the test image has zero chunks');
  t.true(dataChunks.size > 0, 'the test image has data chunks');
  for (const i of zeroChunks) {
    const bytes = await readRange(store, i * CHUNK, Math.min(CHUNK, reader.size - i * CHUNK));
    t.true(bytes.every((b) => b === 0));
  }
  t.is(source.fetchCount, 0, 'zero chunks need no fetch');
  const whole = await collect(reader.createReadStream());
  t.true(whole.equals(imageBytes(spec, 0, spec.sizeBytes)));
  t.is(source.fetchCount, dataChunks.size, 'one fetch per distinct data chunk, none for zero chunks');
  t.is(store.cache.stats().failures, 0);

  // A reader in another thread gets the key with its handle: same bytes, zero chunks still free.
  const zeroStart = reader.index.chunkStart(zeroChunks[0]!);
  const remoteRead = (ranges: { offset: number; length: number }[]) =>
    withTimeout(
      runRemoteReader(store.snapshot, 'drive-scsi0', {
        spec,
        seed: 1,
        concurrency: 1,
        reads: 0,
        maxReadBytes: MiB,
        ranges,
      }),
      20_000,
      'worker-thread reader of an encrypted archive',
    );
  const fetchesBefore = source.fetchCount;
  const zeroRead = await remoteRead([{ offset: zeroStart + 1, length: CHUNK - 2 }]);
  t.is(zeroRead.results[0]?.bytesOk, true, JSON.stringify(zeroRead.results[0]));
  t.is(source.fetchCount, fetchesBefore, 'a zero chunk read from another thread needs no fetch');
  const dataRead = await remoteRead([
    { offset: 0, length: 3 * CHUNK + 5 },
    { offset: reader.size - 700, length: 1000 },
  ]);
  t.deepEqual(
    dataRead.results.filter((r) => r.bytesOk !== true),
    [],
  );
});

/** A source that hands out the very same blob object each time (an in-memory or caching source). */
class KeepingSource implements ChunkSource {
  readonly name = 'keeping';
  readonly blobs = new Map<string, Uint8Array>();
  add(data: Uint8Array): string {
    const { digest, blob } = encodeChunk(data);
    const owned = new Uint8Array(blob);
    this.blobs.set(toHex(digest), owned);
    return toHex(digest);
  }
  fetchChunk(digestHex: string): Promise<Uint8Array> {
    return Promise.resolve(this.blobs.get(digestHex)!);
  }
  listSnapshots = () => Promise.reject(new Error('none'));
  resolveSnapshot = () => Promise.reject(new Error('none'));
  readSnapshotFile = () => Promise.reject(new Error('none'));
}

test('the decode pool does not take away a blob its source still owns', async (t) => {
  const source = new KeepingSource();
  const data = randomBytes(3, 64 * KiB);
  const hex = source.add(data);
  const other = randomBytes(4, 64 * KiB);
  const otherHex = source.add(other);
  const cache = new ChunkCache({ cacheBytes: 64 * KiB, workers: 1 });
  t.teardown(() => cache.close());
  const read = async (digestHex: string, length: number): Promise<void> => {
    const lease = await cache.acquire({ digestHex, length, source });
    cache.release(lease);
  };
  await read(hex, data.byteLength);
  t.is(source.blobs.get(hex)!.byteLength > 0, true, "the source's blob was detached by a transfer");
  await read(otherHex, other.byteLength); // evicts the first chunk (one-chunk cache)
  const second = await read(hex, data.byteLength).then(
    () => 'ok',
    (err: unknown) => `${(err as { code?: string }).code}: ${(err as Error).message}`,
  );
  t.is(second, 'ok', 'the same chunk fetched again from the same source decodes');
});

test('a source whose blobs are transferable hands them to the pool without a copy', async (t) => {
  // Each fetch returns a fresh copy and promises not to keep it: the pool may take it.
  const keeping = new KeepingSource();
  const given: Uint8Array[] = [];
  const source: ChunkSource = {
    name: 'fresh copies',
    blobsAreTransferable: true,
    fetchChunk: async (hex) => {
      const blob = new Uint8Array(keeping.blobs.get(hex)!);
      given.push(blob);
      return blob;
    },
    listSnapshots: keeping.listSnapshots,
    resolveSnapshot: keeping.resolveSnapshot,
    readSnapshotFile: keeping.readSnapshotFile,
  };
  const data = randomBytes(5, 64 * KiB);
  const hex = keeping.add(data);
  const cache = new ChunkCache({ cacheBytes: 64 * KiB, workers: 1 });
  t.teardown(() => cache.close());
  const lease = await cache.acquire({ digestHex: hex, length: data.byteLength, source });
  const out = new Uint8Array(data.byteLength);
  cache.copyOut(lease, 0, out, 0, out.length);
  cache.release(lease);
  t.deepEqual(Buffer.from(out), Buffer.from(data));
  t.is(given.length, 1);
  t.is(given[0]!.byteLength, 0, 'the blob was transferred to the worker (detached here), not copied');
});

test('a request whose length disagrees with its digest fails the same whether the chunk is cached or not', async (t) => {
  // Same digest, other length: only a corrupt or hostile index asks for that. Uncached, the
  // decode catches it (the plaintext has another length); cached, it must not be served.
  const source = new MemorySource();
  const length = 8 * KiB;
  const data = randomBytes(12, length);
  const hex = source.add(data);
  const cache = new ChunkCache({ cacheBytes: 64 * KiB, pageBytes: 4 * KiB, workers: 0 });
  t.teardown(() => cache.close());
  const outcome = async (claimed: number): Promise<string> => {
    try {
      const lease = await cache.acquire({ digestHex: hex, length: claimed, source });
      cache.release(lease);
      return `lease of ${lease.length} bytes`;
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
  };
  const uncached = await outcome(length + 100);
  t.is(uncached, 'ERR_LR_CHUNK_LENGTH_MISMATCH');
  t.is(await outcome(length), `lease of ${length} bytes`);
  t.true(cache.has(hex));
  t.is(
    await outcome(length + 100),
    uncached,
    'a cached chunk is not handed out for a request of another length',
  );
  t.not(await outcome(length - 100), `lease of ${length} bytes`);
});
