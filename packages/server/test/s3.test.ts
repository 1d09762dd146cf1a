/*
 * The server over an S3 datastore in a real Ceph RGW (testkit's testRgw): the same
 * answers as over the directory it was copied from (bodies, cache headers, ETags, 304,
 * Range, no chunked encoding for blobs), 404 no-store for what is missing, and 503
 * ERR_LR_SOURCE_UNAVAILABLE while the gateway is down, then answers again once it is back.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { resolveS3Settings, S3Client, type S3ConnectionOptions } from '@liverestore/datastore';
import { readIndex, toHex } from '@liverestore/format';
import { ExtraGateway, type TestRgw, testRgw } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { type ChunkServer, type ChunkServerOptions, startChunkServer } from '../src/index.js';
import { errorOf, type Fixture, get, MiB, makeFixture, rawRequest, serve } from './helpers.js';

interface S3Fixture {
  readonly local: Fixture;
  readonly rgw: TestRgw;
  readonly client: S3Client;
  readonly url: string;
}

/** Every file under `dir`, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

/**
 * The server test fixture, copied object by object into a fresh bucket in PBS 4.x's S3
 * layout: `.chunks/` as it is, the snapshot directories under `.cnt/`.
 */
async function s3Fixture(t: ExecutionContext): Promise<S3Fixture | undefined> {
  const rgw = testRgw(t);
  if (rgw === undefined) return undefined;
  const local = await makeFixture([3 * MiB + 4321, 2 * MiB]);
  t.teardown(() => local.cleanup());
  const bucket = `lr-srv-${Math.random().toString(16).slice(2, 12)}`;
  const client = new S3Client(bucket, resolveS3Settings(keys(rgw)));
  await client.createBucket();
  t.teardown(async () => {
    await client.deleteObjects((await client.list('')).keys);
    await client.close();
  });
  for (const path of await filesUnder(local.storeDir)) {
    if (path.startsWith('.lock')) continue;
    const key = path.startsWith('.chunks/') ? `store/${path}` : `store/.cnt/${path}`;
    await client.putObject(key, await readFile(join(local.storeDir, path)));
  }
  return { local, rgw, client, url: `s3://${bucket}/store` };
}

function keys(rgw: TestRgw, endpoint = rgw.endpoint): S3ConnectionOptions {
  return { endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
}

function serveS3(
  t: ExecutionContext,
  f: S3Fixture,
  options: Partial<ChunkServerOptions> = {},
): Promise<ChunkServer> {
  return serve(t, f.local, { store: f.url, s3: keys(f.rgw), ...options });
}

/** The chunk digests of drive-scsi1 of the fixture. */
async function digests(f: S3Fixture): Promise<string[]> {
  const { storeDir, snapshot } = f.local;
  const index = readIndex(await readFile(join(storeDir, snapshot, 'drive-scsi1.img.fidx')));
  return Array.from({ length: index.chunkCount }, (_, i) => toHex(index.digestAt(i)));
}

test('over s3:// the server answers as over the directory: listings, files, chunks, images, cache headers', async (t) => {
  const f = await s3Fixture(t);
  if (f === undefined) return;
  const local = await serve(t, f.local);
  const s3 = await serveS3(t, f);
  const { snapshot } = f.local;
  const paths = [
    '/snapshots',
    '/namespaces',
    `/snapshots/${snapshot}/index.json.blob`,
    `/snapshots/${snapshot}/drive-scsi1.img.fidx`,
    `/snapshots/${snapshot}/drive-scsi0.img`,
    ...(await digests(f)).map((hex) => `/chunks/${hex}`),
  ];
  for (const path of paths) {
    const want = await get(`${local.url}${path}`);
    const got = await get(`${s3.url}${path}`);
    t.is(got.status, 200, path);
    t.true(got.body.equals(want.body), path);
    for (const header of ['cache-control', 'etag', 'content-length', 'content-type'])
      t.is(got.headers.get(header), want.headers.get(header), `${path}: ${header}`);
  }
});

test('chunks over s3://: Content-Length and no chunked encoding, 304 for the digest, HEAD, Range', async (t) => {
  const f = await s3Fixture(t);
  if (f === undefined) return;
  const server = await serveS3(t, f);
  const hex = (await digests(f))[0]!;
  const blob = await readFile(join(f.local.storeDir, '.chunks', hex.slice(0, 4), hex));
  const path = `/chunks/${hex}`;
  const whole = await rawRequest(server.url, path);
  t.is(whole.status, 200);
  t.is(whole.headers['content-length'], String(blob.length));
  t.is(whole.headers['transfer-encoding'], undefined);
  t.is(whole.headers['cache-control'], 'public, max-age=31536000, immutable');
  t.is(whole.headers.etag, `"${hex}"`);
  t.true(whole.body.equals(blob));

  const revalidated = await rawRequest(server.url, path, { headers: { 'if-none-match': `"${hex}"` } });
  t.is(revalidated.status, 304);
  t.is(revalidated.body.length, 0);
  t.is(revalidated.headers.etag, `"${hex}"`);

  const head = await rawRequest(server.url, path, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.headers['content-length'], String(blob.length));
  t.is(head.body.length, 0);

  const from = Math.floor(blob.length / 3);
  const rest = await rawRequest(server.url, path, { headers: { range: `bytes=${from}-` } });
  t.is(rest.status, 206);
  t.is(rest.headers['content-range'], `bytes ${from}-${blob.length - 1}/${blob.length}`);
  t.true(rest.body.equals(blob.subarray(from)));
});

test('over s3:// a missing chunk, snapshot or file is 404 no-store; a snapshot without its manifest is not there', async (t) => {
  const f = await s3Fixture(t);
  if (f === undefined) return;
  const server = await serveS3(t, f);
  const missing = await rawRequest(server.url, `/chunks/${'0'.repeat(64)}`);
  t.is(missing.status, 404);
  t.is(missing.headers['cache-control'], 'no-store');
  t.is(errorOf(missing.body).code, 'ERR_LR_CHUNK_MISSING');
  const missingHead = await rawRequest(server.url, `/chunks/${'0'.repeat(64)}`, { method: 'HEAD' });
  t.is(missingHead.status, 404);

  const { snapshot } = f.local;
  const noFile = await rawRequest(server.url, `/snapshots/${snapshot}/drive-scsi9.img.fidx`);
  t.is(noFile.status, 404);
  t.is(errorOf(noFile.body).code, 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND');
  const noSnapshot = await rawRequest(
    server.url,
    `/snapshots/vm/999/${snapshot.split('/')[2]}/index.json.blob`,
  );
  t.is(noSnapshot.status, 404);
  t.is(errorOf(noSnapshot.body).code, 'ERR_LR_SNAPSHOT_NOT_FOUND');

  // A backup in progress: its index is stored, its manifest not yet.
  await f.client.deleteObjects([`store/.cnt/${snapshot}/index.json.blob`]);
  const unfinished = await rawRequest(server.url, `/snapshots/${snapshot}/drive-scsi1.img.fidx`);
  t.is(unfinished.status, 404);
  t.is(unfinished.headers['cache-control'], 'no-store');
  t.is(errorOf(unfinished.body).code, 'ERR_LR_SNAPSHOT_NOT_FOUND');
  t.deepEqual(JSON.parse((await rawRequest(server.url, '/snapshots')).body.toString()), []);
});

test('with the gateway down a chunk GET is 503 ERR_LR_SOURCE_UNAVAILABLE (no-store, Retry-After); once it is back, 200', async (t) => {
  const f = await s3Fixture(t);
  if (f === undefined) return;
  const gateway = await ExtraGateway.open(f.rgw);
  t.teardown(() => gateway.stop());
  const server = await serve(t, f.local, { store: f.url, s3: keys(f.rgw, gateway.endpoint) });
  const [first, second] = await digests(f);
  const path = `/chunks/${first}`;
  t.is((await rawRequest(server.url, path)).status, 200);

  await gateway.stop();
  const down = await rawRequest(server.url, `/chunks/${second}`);
  t.is(down.status, 503);
  t.is(down.headers['cache-control'], 'no-store');
  t.is(down.headers['retry-after'], '1');
  t.is(errorOf(down.body).code, 'ERR_LR_SOURCE_UNAVAILABLE');
  t.is((await rawRequest(server.url, '/snapshots')).status, 503);

  await gateway.start();
  const back = await rawRequest(server.url, `/chunks/${second}`);
  t.is(back.status, 200);
  t.true(back.body.equals(await readFile(join(f.local.storeDir, '.chunks', second!.slice(0, 4), second!))));
});

test('s3 options are refused for a directory store', async (t) => {
  await t.throwsAsync(() => startChunkServer({ store: '/x', s3: {} }), {
    instanceOf: TypeError,
    message: /s3:\/\/BUCKET\/STORE/,
  });
});
