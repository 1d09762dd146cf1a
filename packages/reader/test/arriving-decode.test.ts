/*
 * Urgent loads decoded while their blob arrives (arriving-blob.ts, decode-worker.ts's
 * decodeArriving), end to end: a real HTTP source against the test server sending chunk
 * bodies in 64 KiB pieces a few ms apart (a slow link), a real pool of decode threads.
 */
import type { Datastore, SnapshotRef } from '@liverestore/datastore';
import { chunkDigest, toHex } from '@liverestore/format';
import { canDecodeArriving } from '@liverestore/format/internal';
import { type ImageSpec, imageBytes, vmImageSet } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { ChunkCache, type ChunkLoadRecord, HttpChunkSource, openSnapshot } from '../src/index.js';
import { TestServer } from './fixtures/http-test-server.js';
import { fileSharedStore, MiB } from './helpers.js';

const CHUNK = 4 * MiB;
const streamTest = canDecodeArriving() ? test : test.skip;

const sharedStore = fileSharedStore(
  test,
  'lr-arriving-store-',
  vmImageSet(11, { drives: 1, sizeBytes: 24 * MiB })[0]!.spec,
  CHUNK,
);

interface Fixture {
  readonly store: Datastore;
  readonly spec: ImageSpec;
  readonly ref: SnapshotRef;
  readonly server: TestServer;
  readonly records: ChunkLoadRecord[];
  readonly cache: ChunkCache;
  /** Chunks of at least 256 KiB of blob (decoded as they arrive), by index in the image. */
  bigBlobChunks(): Promise<{ i: number; hex: string }[]>;
  read(offset: number, bytes: number): Promise<Buffer>;
}

async function setup(t: ExecutionContext, decodeAsArriving = true): Promise<Fixture> {
  const { store, spec, ref } = await sharedStore();
  const server = await TestServer.start(store);
  t.teardown(() => server.stop());
  server.behaviour.bodyPieceDelayMs = 3;
  const records: ChunkLoadRecord[] = [];
  const cache = new ChunkCache({
    cacheBytes: 32 * MiB,
    workers: 2,
    decodeAsArriving,
    onLoad: (r) => records.push(r),
  });
  t.teardown(() => cache.close());
  const source = await HttpChunkSource.open(server.url);
  t.teardown(() => source.close());
  const snapshot = await openSnapshot({ source, snapshot: { ...ref }, cache });
  t.teardown(() => snapshot.close());
  const reader = await snapshot.openArchive('drive-scsi0');
  return {
    store,
    spec,
    ref,
    server,
    records,
    cache,
    async bigBlobChunks() {
      const index = await store.readArchiveIndex(ref, 'drive-scsi0');
      const zero = toHex(chunkDigest(new Uint8Array(CHUNK)));
      const out: { i: number; hex: string }[] = [];
      for (let i = 0; i < index.chunkCount; i++) {
        const hex = toHex(index.digestAt(i));
        if (hex !== zero && (await store.readChunk(hex)).byteLength >= 256 * 1024) out.push({ i, hex });
      }
      return out;
    },
    async read(offset, bytes) {
      const buffer = Buffer.alloc(bytes);
      await reader.readAt(buffer, offset);
      return buffer;
    },
  };
}

streamTest('a guest miss on a slow link is decoded as its blob arrives, to the right bytes', async (t) => {
  const f = await setup(t);
  const [big] = await f.bigBlobChunks();
  t.truthy(big, 'the test image has a chunk with a blob of several pieces');
  const offset = big!.i * CHUNK + 12_345;
  t.true((await f.read(offset, 64 * 1024)).equals(imageBytes(f.spec, offset, 64 * 1024)));
  const record = f.records.find((r) => r.digestHex === big!.hex);
  t.like(record, { ok: true, urgent: true, decodedArriving: true, decodeWaitMs: 0 });
  // The decode ran beside the body: what was left after its last byte is a fraction of it.
  t.true(
    record!.decodeMs < record!.blobMs,
    `decode after the last byte ${record!.decodeMs} ms, blob ${record!.blobMs} ms`,
  );
});

test('off by default: every blob is decoded whole once it is in', async (t) => {
  const f = await setup(t, false);
  const [big] = await f.bigBlobChunks();
  t.true((await f.read(big!.i * CHUNK, 4096)).equals(imageBytes(f.spec, big!.i * CHUNK, 4096)));
  t.like(
    f.records.find((r) => r.digestHex === big!.hex),
    { ok: true, urgent: true, decodedArriving: false },
  );
});

streamTest('misses in a burst are decoded whole, as before', async (t) => {
  const f = await setup(t);
  const big = await f.bigBlobChunks();
  t.true(big.length >= 2);
  // Two misses at once: each one's answer comes while the other's blob is on its way.
  const [a, b] = await Promise.all(big.slice(0, 2).map(({ i }) => f.read(i * CHUNK, 4096)));
  t.true(a!.equals(imageBytes(f.spec, big[0]!.i * CHUNK, 4096)));
  t.true(b!.equals(imageBytes(f.spec, big[1]!.i * CHUNK, 4096)));
  t.is(f.records.filter((r) => r.decodedArriving).length, 0, JSON.stringify(f.records));
});

streamTest('a blob damaged on the wire fails as it would decoded whole, and is not cached', async (t) => {
  const f = await setup(t);
  const [big] = await f.bigBlobChunks();
  f.server.behaviour.corrupt.add(big!.hex);
  const error = await t.throwsAsync(f.read(big!.i * CHUNK, 4096));
  t.regex(String((error as { code?: string }).code), /^ERR_LR_(BLOB_CRC|DIGEST)_MISMATCH$/);
  t.true(f.records.some((r) => r.digestHex === big!.hex && r.decodedArriving && !r.ok));
  // Served right the next time: the failed load left nothing behind.
  f.server.behaviour.corrupt.clear();
  t.true((await f.read(big!.i * CHUNK, 4096)).equals(imageBytes(f.spec, big!.i * CHUNK, 4096)));
  f.cache.checkInvariants();
});

streamTest(
  'a connection cut in the middle of an arriving blob: the fetch starts over and the chunk decodes',
  async (t) => {
    const f = await setup(t);
    const [big] = await f.bigBlobChunks();
    f.server.behaviour.cutAfterBytes = 128 * 1024;
    f.server.behaviour.cutNext = 1;
    t.true((await f.read(big!.i * CHUNK, 4096)).equals(imageBytes(f.spec, big!.i * CHUNK, 4096)));
    t.is(f.server.requestsFor(`/chunks/${big!.hex}`), 2, 'cut once, fetched again');
    // The thread reading the cut answer gave it up; the second answer was decoded whole.
    t.like(
      f.records.find((r) => r.digestHex === big!.hex),
      { ok: true, decodedArriving: false },
    );
    f.cache.checkInvariants();
  },
);
