import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, Datastore, type SnapshotRef } from '@liverestore/datastore';
import { ChunkCache, HttpChunkSource, openSnapshot } from '@liverestore/reader';
import { randomBytes, tempDir } from '@liverestore/testkit';
import anyTest, { type TestFn } from 'ava';
import { errorOf, type Fixture, get, KiB, makeFixture, serve } from './helpers.js';

interface Context {
  fixture: Fixture;
  deep: SnapshotRef;
  deepPath: string;
  image: Buffer;
}

const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const fixture = await makeFixture([300 * KiB, 200 * KiB]);
  const work = await tempDir('lr-server-ns-');
  try {
    const image = randomBytes(9, 700 * KiB + 5);
    const path = join(work.path, 'disk.raw');
    await writeFile(path, image);
    const result = await backup(await Datastore.open(fixture.storeDir), {
      namespace: 'prod/db',
      type: 'vm',
      id: '100',
      inputs: [{ name: 'drive-scsi0', path }],
      chunkSizeBytes: 64 * KiB,
      encodeThreads: 0,
    });
    t.context = { fixture, deep: result.ref, deepPath: result.snapshot, image };
  } finally {
    await work.cleanup();
  }
});
test.after.always(async (t) => {
  await t.context.fixture?.cleanup();
});

test('GET /snapshots keeps listing the root namespace; ?ns= and max-depth reach the namespaces', async (t) => {
  const { fixture, deepPath } = t.context;
  const server = await serve(t, fixture);
  const root = JSON.parse((await get(`${server.url}/snapshots`)).body.toString()) as {
    snapshot: string;
    ns: string;
  }[];
  t.deepEqual(
    root.map((s) => [s.snapshot, s.ns]),
    [[fixture.snapshot, '']],
  );
  const prod = await get(`${server.url}/snapshots?ns=prod`);
  t.deepEqual(JSON.parse(prod.body.toString()), []);
  const below = JSON.parse((await get(`${server.url}/snapshots?ns=prod&max-depth=1`)).body.toString()) as {
    snapshot: string;
    ns: string;
    archives: { name: string }[];
  }[];
  t.deepEqual(
    below.map((s) => [s.snapshot, s.ns, s.archives.map((a) => a.name)]),
    [[deepPath, 'prod/db', ['drive-scsi0.img']]],
  );
  const all = JSON.parse((await get(`${server.url}/snapshots?max-depth=7`)).body.toString()) as unknown[];
  t.is(all.length, 2);
  const namespaces = JSON.parse((await get(`${server.url}/namespaces`)).body.toString()) as unknown;
  t.deepEqual(namespaces, [{ ns: '' }, { ns: 'prod' }, { ns: 'prod/db' }]);
  t.deepEqual(JSON.parse((await get(`${server.url}/namespaces?ns=prod&max-depth=0`)).body.toString()), [
    { ns: 'prod' },
  ]);
});

test('namespaced files and images are addressed as they lie on disk; bad namespaces are 400, missing 404', async (t) => {
  const { fixture, deepPath, image } = t.context;
  const server = await serve(t, fixture);
  const manifest = await get(`${server.url}/snapshots/${deepPath}/index.json.blob`);
  t.is(manifest.status, 200);
  t.deepEqual(
    manifest.body,
    await readFile(
      join(
        fixture.storeDir,
        'ns',
        'prod',
        'ns',
        'db',
        'vm',
        '100',
        deepPath.split('/').at(-1)!,
        'index.json.blob',
      ),
    ),
  );
  const img = await get(`${server.url}/snapshots/${deepPath}/drive-scsi0.img`);
  t.is(img.status, 200);
  t.deepEqual(img.body, image);
  // The same group and time in namespace prod (one level up) is no snapshot.
  const rootPath = `vm/100/${deepPath.split('/').at(-1)!}`;
  const missing = await get(`${server.url}/snapshots/ns/prod/${rootPath}/index.json.blob`);
  t.is(missing.status, 404);
  t.is(errorOf(missing.body).code, 'ERR_LR_SNAPSHOT_NOT_FOUND');
  for (const [url, status, code] of [
    ['/snapshots?ns=a%2F%2Fb', 400, 'ERR_LR_NAMESPACE_INVALID'],
    ['/snapshots?ns=-x', 400, 'ERR_LR_NAMESPACE_INVALID'],
    ['/snapshots?ns=test', 404, 'ERR_LR_NAMESPACE_NOT_FOUND'],
    ['/namespaces?ns=test', 404, 'ERR_LR_NAMESPACE_NOT_FOUND'],
    ['/snapshots?max-depth=8', 400, 'ERR_LR_HTTP_BAD_PATH'],
    ['/snapshots?max-depth=x', 400, 'ERR_LR_HTTP_BAD_PATH'],
    [`/snapshots/ns/-x/${rootPath}/index.json.blob`, 400, 'ERR_LR_HTTP_BAD_PATH'],
  ] as const) {
    const res = await get(`${server.url}${url}`);
    t.is(res.status, status, url);
    t.is(errorOf(res.body).code, code, url);
  }
});

test('the HTTP source lists, resolves and restores namespaced snapshots from the server', async (t) => {
  const { fixture, deep, image } = t.context;
  const server = await serve(t, fixture);
  const source = await HttpChunkSource.open(server.url);
  t.teardown(() => source.close());
  t.deepEqual(await source.listNamespaces(), ['', 'prod', 'prod/db']);
  t.deepEqual(await source.listSnapshots({ namespace: 'prod/db' }), [deep]);
  t.is((await source.listSnapshots()).length, 1);
  t.deepEqual(await source.resolveSnapshot({ namespace: 'prod/db', type: 'vm', id: '100' }), deep);
  await t.throwsAsync(source.resolveSnapshot({ type: 'vm', id: '101', namespace: 'prod/db' }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
    message: /in namespace 'prod\/db'/,
  });
  await t.throwsAsync(source.listSnapshots({ namespace: 'test' }), { code: 'ERR_LR_NAMESPACE_NOT_FOUND' });
  const cache = new ChunkCache({ cacheBytes: 4 * 1024 * 1024, workers: 0 });
  t.teardown(() => cache.close());
  const snap = await openSnapshot({ source, snapshot: 'ns/prod/ns/db/vm/100', cache });
  t.teardown(() => snap.close());
  t.is(snap.path, t.context.deepPath);
  const reader = await snap.openArchive('drive-scsi0.img');
  const out = Buffer.alloc(image.length);
  await reader.readAt(out, 0);
  t.deepEqual(out, image);
});
