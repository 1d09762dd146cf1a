/*
 * S3Datastore and backup() into it, against the real RGW: a snapshot is there only with
 * its manifest, stored chunks are never uploaded again nor overwritten, an interrupted
 * backup leaves no index behind, and verify reads the store like a local one.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FaultProxy, randomBytes } from '@liverestore/testkit';
import test from 'ava';
import { backup, Datastore, formatSnapshot, S3Datastore, verifySnapshots } from '../src/index.js';
import { KiB, testDir, writeInput } from './helpers.js';
import { s3Fixture } from './s3-fixture.js';

const TIME = 1_700_000_000;

test('a snapshot is listed only once its manifest is stored', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  const ref = { type: 'vm' as const, id: '9', time: TIME };
  await store.writeSnapshotFile(ref, 'drive-scsi0.img.fidx', Buffer.from('index'));
  t.deepEqual(await store.snapshotTimes('vm', '9'), []);
  t.deepEqual(await store.listSnapshotRefs(), []);
  await t.throwsAsync(store.resolveSnapshot({ type: 'vm', id: '9' }), { code: 'ERR_LR_SNAPSHOT_NOT_FOUND' });
  await store.writeSnapshotFile(ref, 'index.json.blob', Buffer.from('manifest'));
  t.deepEqual(await store.snapshotTimes('vm', '9'), [TIME]);
  t.deepEqual(await store.listSnapshotRefs(), [ref]);
  // Never over an existing file: another backup's snapshot is not overwritten.
  await t.throwsAsync(store.writeSnapshotFile(ref, 'index.json.blob', Buffer.from('other')), {
    code: 'ERR_LR_SNAPSHOT_EXISTS',
  });
  t.is(Buffer.from(await store.readSnapshotFile(ref, 'index.json.blob')).toString(), 'manifest');
});

test('open: a missing store, a missing bucket and an empty namespace have their codes', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  await t.throwsAsync(S3Datastore.open(s3.url('none'), s3.options), { code: 'ERR_LR_STORE_NOT_FOUND' });
  await t.throwsAsync(S3Datastore.open(`s3://${s3.bucket}-x/store`, { ...s3.options, create: true }), {
    code: 'ERR_LR_S3_BUCKET_NOT_FOUND',
  });
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  await t.throwsAsync(store.listNamespaces({ namespace: 'prod' }), { code: 'ERR_LR_NAMESPACE_NOT_FOUND' });
  await t.throwsAsync(store.readChunk('ab'.repeat(32)), { code: 'ERR_LR_CHUNK_MISSING' });
});

test('backup uploads each new chunk once, with If-None-Match; a chunk the store has is not uploaded', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const dir = await testDir(t);
  const data = randomBytes(31, 64 * KiB * 6);
  const input = await writeInput(dir, 'disk.raw', data);
  const proxy = await FaultProxy.start(s3.rgw.endpoint);
  t.teardown(() => proxy.close());
  const store = await S3Datastore.open(s3.url(), { ...s3.options, endpoint: proxy.url, create: true });
  t.teardown(() => store.close());
  const options = {
    type: 'vm' as const,
    id: '1',
    chunkSizeBytes: 64 * KiB,
    inputs: [{ name: 'drive-scsi0', path: input }],
  };
  const first = await backup(store, { ...options, backupTime: TIME });
  t.is(first.chunksNew, 6);
  const chunkPuts = proxy.log.filter((r) => r.method === 'PUT' && r.path.includes('/.chunks/'));
  t.is(chunkPuts.length, 6);
  const before = proxy.log.length;
  const second = await backup(store, { ...options, backupTime: TIME + 1 });
  t.is(second.chunksNew, 0);
  t.deepEqual(
    proxy.log.slice(before).filter((r) => r.method === 'PUT' && r.path.includes('/.chunks/')),
    [],
    'no chunk uploaded again',
  );
  // A racing writer stored the chunk first: If-None-Match keeps its object.
  const digest = (await s3.client.list('store/.chunks/')).keys[0]!.split('/').at(-1)!;
  const stored = await store.readChunk(digest);
  t.false(await store.insertChunk(digest, Buffer.from('not the blob')));
  t.deepEqual(await store.readChunk(digest), stored);
});

test('an interrupted backup removes the index files it stored; no snapshot appears', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const dir = await testDir(t);
  const disk = await writeInput(dir, 'a.raw', randomBytes(5, 128 * KiB));
  const disk2 = await writeInput(dir, 'b.raw', randomBytes(6, 192 * KiB));
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  // Stopped while the second archive is read: the first one's index is stored by then.
  const stop = new AbortController();
  await t.throwsAsync(
    backup(store, {
      type: 'vm',
      id: '2',
      backupTime: TIME,
      inputs: [
        { name: 'drive-scsi0', path: disk },
        { name: 'drive-scsi1', path: disk2 },
      ],
      chunkSizeBytes: 64 * KiB,
      signal: stop.signal,
      onProgress: (p) => {
        if (p.archive === 'drive-scsi1.img') stop.abort(new Error('stopped'));
      },
    }),
    { message: 'stopped' },
  );
  t.deepEqual(await store.listSnapshotRefs(), []);
  const left = (await s3.client.list('store/.cnt/')).keys;
  t.deepEqual(left, ['store/.cnt/vm/2/owner']);
});

test('verify reads an S3 store like a local one and names a damaged chunk', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const dir = await testDir(t);
  const input = await writeInput(dir, 'disk.raw', randomBytes(8, 64 * KiB * 4));
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  const { ref } = await backup(store, {
    type: 'ct',
    id: '3',
    namespace: 'prod/db',
    chunkSizeBytes: 64 * KiB,
    inputs: [{ name: 'drive-scsi0', path: input }],
  });
  t.deepEqual(await store.listNamespaces(), ['', 'prod', 'prod/db']);
  t.deepEqual(await store.listSnapshotRefs({ maxDepth: 7 }), [ref]);
  const good = await verifySnapshots(store, [ref]);
  t.true(good.ok);
  t.is(good.chunks, 4);
  const key = (await s3.client.list('store/.chunks/')).keys[2]!;
  const blob = Buffer.from(await s3.client.getObject(key, { maxBytes: 1 << 20 }));
  blob[blob.length - 1]! ^= 0xff;
  await s3.client.putObject(key, blob);
  const bad = await verifySnapshots(store, [ref]);
  t.false(bad.ok);
  t.deepEqual(
    bad.badChunks.map((c) => c.digest),
    [key.split('/').at(-1)],
  );
});

test('listing and resolving on S3 as on disk: one order (type, id, time) in each namespace; a miss names the snapshots there are', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  const dir = await testDir(t);
  const local = await Datastore.create(dir);
  // Written out of order, ids that sort differently as numbers and as text.
  const refs = [
    { type: 'vm' as const, id: '100', time: TIME + 60 },
    { type: 'ct' as const, id: '7', time: TIME },
    { type: 'vm' as const, id: '100', time: TIME },
    { type: 'vm' as const, id: '20', time: TIME },
    { namespace: 'prod', type: 'host' as const, id: 'db', time: TIME },
  ];
  for (const ref of refs) {
    await store.writeSnapshotFile(ref, 'index.json.blob', Buffer.from('manifest'));
    await mkdir(local.snapshotDir(ref), { recursive: true });
    await writeFile(join(local.snapshotDir(ref), 'index.json.blob'), 'manifest');
  }
  const listed = await store.listSnapshotRefs({ maxDepth: 1 });
  t.deepEqual(listed, await local.listSnapshotRefs({ maxDepth: 1 }));
  t.deepEqual(
    listed.map((r) => formatSnapshot(r)),
    [
      'vm/100/2023-11-14T22:13:20Z',
      'vm/100/2023-11-14T22:14:20Z',
      'vm/20/2023-11-14T22:13:20Z',
      'ct/7/2023-11-14T22:13:20Z',
      'ns/prod/host/db/2023-11-14T22:13:20Z',
    ],
  );
  t.deepEqual(await store.resolveSnapshot({ type: 'vm', id: '100' }), refs[0]);
  for (const target of [store, local]) {
    const err = await t.throwsAsync(target.resolveSnapshot({ type: 'vm', id: '101' }), {
      code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
    });
    t.regex(err?.message ?? '', /did you mean vm\/100/);
  }
});
