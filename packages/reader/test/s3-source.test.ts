/*
 * S3ChunkSource against a real Ceph RGW (testkit's testRgw): a restore through the shared
 * cache is byte-identical; a gateway stopped in the middle of a restore and started again
 * costs a pause, not the restore; a gateway that stays down fails it with
 * ERR_LR_SOURCE_UNAVAILABLE; a background fetch makes way for an urgent one and resumes.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  backup,
  resolveS3Settings,
  S3Client,
  type S3ConnectionOptions,
  S3Datastore,
} from '@liverestore/datastore';
import { ExtraGateway, FaultProxy, type ImageSpec, testRgw, writeImageFile } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { ChunkCache, type ChunkSource, openSnapshot, restoreArchive, S3ChunkSource } from '../src/index.js';
import { KiB, MiB, testDir } from './helpers.js';

interface Stored {
  readonly url: string;
  readonly options: S3ConnectionOptions;
  readonly snapshot: string;
  readonly imagePath: string;
  readonly dir: string;
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** A fresh bucket with one snapshot vm/1 of a 6 MiB image in 256 KiB chunks (24 chunks). */
async function stored(t: ExecutionContext): Promise<Stored | undefined> {
  const rgw = testRgw(t);
  if (rgw === undefined) return undefined;
  const bucket = `lr-rd-${Math.random().toString(16).slice(2, 12)}`;
  const options = {
    endpoint: rgw.endpoint,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  };
  const client = new S3Client(bucket, resolveS3Settings(options));
  await client.createBucket();
  t.teardown(async () => {
    await client.deleteObjects((await client.list('')).keys);
    await client.close();
  });
  const dir = await testDir(t, 'lr-reader-s3-');
  const imagePath = join(dir, 'image.raw');
  const spec: ImageSpec = {
    sizeBytes: 6 * MiB + 5 * KiB,
    seed: 5150,
    mix: { zero: 0, text: 1, random: 2, repeat: 0 },
  };
  await writeImageFile(spec, imagePath);
  const url = `s3://${bucket}/store`;
  const store = await S3Datastore.open(url, { ...options, create: true });
  try {
    const result = await backup(store, {
      type: 'vm',
      id: '1',
      inputs: [{ name: 'drive-scsi0', path: imagePath }],
      chunkSizeBytes: 256 * KiB,
    });
    return { url, options, snapshot: result.snapshot, imagePath, dir };
  } finally {
    await store.close();
  }
}

/** Restores drive-scsi0 of the snapshot from `source` and returns the file's bytes. */
async function restoreFrom(t: ExecutionContext, s: Stored, source: ChunkSource): Promise<Buffer> {
  const cache = new ChunkCache({ cacheBytes: 2 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: s.snapshot, cache });
  const reader = await snapshot.openArchive('drive-scsi0');
  const out = join(s.dir, `restored-${Math.random().toString(16).slice(2)}`);
  await restoreArchive(reader, out, { concurrency: 4 });
  return readFile(out);
}

/** Resolves once `condition` holds, checking after each turn of timers (an observable event, not a guess). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

test('a restore from s3:// through the cache is byte-identical', async (t) => {
  const s = await stored(t);
  if (s === undefined) return;
  const source = await S3ChunkSource.open(s.url, s.options);
  t.teardown(() => source.close());
  t.is(sha256(await restoreFrom(t, s, source)), sha256(await readFile(s.imagePath)));
  t.deepEqual(
    (await source.listSnapshots()).map((r) => r.id),
    ['1'],
  );
});

test('the gateway stopped in the middle of a restore and started again: the restore retries and completes', async (t) => {
  const s = await stored(t);
  if (s === undefined) return;
  const rgw = testRgw(t)!;
  const gateway = await ExtraGateway.open(rgw);
  t.teardown(() => gateway.stop());
  const source = await S3ChunkSource.open(s.url, {
    ...s.options,
    endpoint: gateway.endpoint,
    retries: 60,
    backoffBaseMs: 20,
    backoffCapMs: 200,
  });
  t.teardown(() => source.close());
  const stats = source.store.client.stats;
  let fetches = 0;
  let restarted: Promise<void> | undefined;
  // On the fourth chunk the gateway goes away (killed: radosgw's graceful stop takes 5–10 s,
  // which the retries below would have to outlast); it comes back once a request has
  // failed against it and been retried.
  const faulty: ChunkSource = {
    name: source.name,
    blobsAreTransferable: true,
    fetchChunk: async (hex, signal, hints) => {
      if (++fetches === 4) {
        await gateway.stop('SIGKILL');
        const retriesBefore = stats.retries;
        restarted = until(() => stats.retries > retriesBefore).then(() => gateway.start());
      }
      return source.fetchChunk(hex, signal, hints);
    },
    listSnapshots: (scope) => source.listSnapshots(scope),
    resolveSnapshot: (spec) => source.resolveSnapshot(spec),
    readSnapshotFile: (ref, file) => source.readSnapshotFile(ref, file),
  };
  const restored = await restoreFrom(t, s, faulty);
  await restarted;
  t.true(fetches > 4);
  t.true(stats.retries > 0, 'requests failed while the gateway was down and were retried');
  t.is(sha256(restored), sha256(await readFile(s.imagePath)));
});

test('the gateway gone for good: the restore fails with ERR_LR_SOURCE_UNAVAILABLE', async (t) => {
  const s = await stored(t);
  if (s === undefined) return;
  const gateway = await ExtraGateway.open(testRgw(t)!);
  t.teardown(() => gateway.stop());
  const source = await S3ChunkSource.open(s.url, {
    ...s.options,
    endpoint: gateway.endpoint,
    retries: 2,
    backoffBaseMs: 5,
    backoffCapMs: 10,
  });
  t.teardown(() => source.close());
  const cache = new ChunkCache({ cacheBytes: 2 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({ source, snapshot: s.snapshot, cache });
  const reader = await snapshot.openArchive('drive-scsi0');
  await gateway.stop();
  await t.throwsAsync(restoreArchive(reader, join(s.dir, 'never')), { code: 'ERR_LR_SOURCE_UNAVAILABLE' });
});

test('a background fetch on the wire makes way for an urgent one and then resumes with Range', async (t) => {
  const s = await stored(t);
  if (s === undefined) return;
  const proxy = await FaultProxy.start(testRgw(t)!.endpoint);
  t.teardown(() => proxy.close());
  // A deadline longer than the test: no request is retried for being slow.
  const source = await S3ChunkSource.open(s.url, { ...s.options, endpoint: proxy.url, timeoutMs: 600_000 });
  t.teardown(() => source.close());
  const ref = await source.resolveSnapshot({ type: 'vm', id: '1' });
  const index = await source.readSnapshotFile(ref, 'drive-scsi0.img.fidx');
  // Two digests from the fixed index (its digests start at byte 4096).
  const [first, second] = [0, 1].map((i) =>
    Buffer.from(index.subarray(4096 + i * 32, 4096 + (i + 1) * 32)).toString('hex'),
  );
  const direct = await S3ChunkSource.open(s.url, s.options);
  t.teardown(() => direct.close());
  const expected = await direct.fetchChunk(first!);

  // The background GET is held at the proxy (as on a slow link) while the urgent one runs.
  proxy.inject({ kind: 'delay', ms: 60_000 }, 1, { pathIncludes: first! });
  const before = proxy.counts.requests;
  const background = source.fetchChunk(first!, undefined, { urgent: false });
  await until(() => proxy.counts.requests > before);
  t.is(proxy.pendingFaults, 0, 'the background GET is on the wire');
  await source.fetchChunk(second!);
  t.true(Buffer.from(await background).equals(Buffer.from(expected)));
  const log = proxy.log
    .slice(before)
    .map(({ path, range }) => ({ chunk: path.includes(first!) ? 'first' : 'second', range }));
  t.deepEqual(
    log,
    [
      { chunk: 'first', range: 'bytes=0-' },
      { chunk: 'second', range: undefined },
      { chunk: 'first', range: 'bytes=0-' },
    ],
    'background GET, urgent GET, the background GET again once the urgent one is done',
  );
});
