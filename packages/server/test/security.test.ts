import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readIndex, toHex } from '@liverestore/format';
import { ChunkCache } from '@liverestore/reader';
import { errorOf, fixtureTest, get, MiB, rawRequest, serve } from './helpers.js';

const test = fixtureTest();

test('with a token: missing or wrong is 401 with WWW-Authenticate, right is 200, /metrics stays open', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f, { token: 's3cret-token' });
  const paths = [
    '/snapshots',
    `/snapshots/${f.snapshot}/index.json.blob`,
    '/nope',
    `/chunks/${'0'.repeat(64)}`,
  ];
  for (const path of paths) {
    for (const headers of [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: 'Bearer s3cret-token2' },
    ]) {
      const res = await get(`${server.url}${path}`, headers);
      t.is(res.status, 401, path);
      t.is(res.headers.get('www-authenticate'), 'Bearer');
      t.is(errorOf(res.body).code, 'ERR_LR_HTTP_UNAUTHORIZED');
    }
  }
  const ok = await get(`${server.url}/snapshots`, { authorization: 'Bearer s3cret-token' });
  t.is(ok.status, 200);
  const image = await get(`${server.url}/snapshots/${f.snapshot}/drive-scsi0.img`, {
    authorization: 'Bearer s3cret-token',
    range: 'bytes=0-99',
  });
  t.is(image.status, 206);
  t.is((await get(`${server.url}/metrics`)).status, 200);
});

test('path traversal attempts are 400 or 404 and never return file contents', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const manifest = await readFile(join(f.storeDir, f.snapshot, 'index.json.blob'));
  const snap = `/snapshots/${f.snapshot}`;
  const attempts = [
    '/snapshots/vm/100/..%2F..%2Fetc/passwd',
    '/snapshots/../../x',
    '/snapshots/../../etc/passwd',
    '/../../../etc/passwd',
    `${snap}/index.json.blob%00`,
    `${snap}/index.json.blob%00.fidx`,
    `${snap}/%2e%2e`,
    `${snap}/..%2findex.json.blob`,
    `${snap}/..%5c..%5cindex.json.blob`,
    `${snap}/.hidden.blob`,
    '/snapshots/vm/..%2F..%2F/2026-01-01T00:00:00Z/index.json.blob',
    '/snapshots/vm/100/2026-01-01T00:00:00Z/../../../../etc/passwd',
    '/chunks/%2e%2e',
    '/chunks/../../etc/passwd',
    '/snapshots/vm/100/%zz/x.img',
    `${snap}/index.json.blob/`,
    '/snapshots//vm/100',
  ];
  for (const path of attempts) {
    const res = await rawRequest(server.url, path);
    t.true(res.status === 400 || res.status === 404, `${path}: ${res.status}`);
    t.false(res.body.includes('root:'), path);
    t.false(res.body.equals(manifest), path);
    t.regex(errorOf(res.body).code, /^ERR_LR_/);
  }
});

test('symlinks pointing out of the store read as missing', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const secret = join(f.storeDir, '..', 'secret.txt');
  await writeFile(secret, 'top secret\n');
  await symlink(secret, join(f.storeDir, f.snapshot, 'evil.blob'));
  const hex = 'ab'.repeat(32);
  await mkdir(join(f.storeDir, '.chunks', hex.slice(0, 4)), { recursive: true });
  await symlink(secret, join(f.storeDir, '.chunks', hex.slice(0, 4), hex));
  const file = await get(`${server.url}/snapshots/${f.snapshot}/evil.blob`);
  t.is(file.status, 404);
  t.false(file.body.includes('top secret'));
  const chunk = await get(`${server.url}/chunks/${hex}`);
  t.is(chunk.status, 404);
  t.false(chunk.body.includes('top secret'));
});

/** A cache whose loads wait until the test opens the gate: holds a response in progress. */
class GatedCache extends ChunkCache {
  #open: () => void = () => undefined;
  readonly gate = new Promise<void>((resolve) => {
    this.#open = resolve;
  });
  open(): void {
    this.#open();
  }
  override acquire(...args: Parameters<ChunkCache['acquire']>): ReturnType<ChunkCache['acquire']> {
    return this.gate.then(() => super.acquire(...args));
  }
}

test('beyond maxConcurrentRequests the server answers 503 with Retry-After', async (t) => {
  const f = t.context.fixture;
  const cache = new GatedCache({ cacheBytes: 16 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const server = await serve(t, f, { cache, maxConcurrentRequests: 1 });
  const index = readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi1.img.fidx')));
  t.true(index.chunkCount > 1 && toHex(index.digestAt(0)).length === 64);
  const slow = await fetch(`${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`);
  t.is(slow.status, 200);
  const busy = await get(`${server.url}/snapshots`);
  t.is(busy.status, 503);
  t.is(busy.headers.get('retry-after'), '1');
  t.is(errorOf(busy.body).code, 'ERR_LR_HTTP_BUSY');
  t.is((await get(`${server.url}/metrics`)).status, 200, '/metrics is not counted');
  cache.open();
  const body = Buffer.from(await slow.arrayBuffer());
  t.is(body.length, index.sizeBytes);
  t.is((await get(`${server.url}/snapshots`)).status, 200);
});

test('close() waits for a response in progress, then refuses new connections', async (t) => {
  const f = t.context.fixture;
  const cache = new GatedCache({ cacheBytes: 16 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const server = await serve(t, f, { cache });
  const slow = await fetch(`${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`);
  const closed = server.close();
  cache.open();
  const body = Buffer.from(await slow.arrayBuffer());
  await closed;
  t.is(
    body.length,
    (await readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi1.img.fidx')))).sizeBytes,
  );
  await t.throwsAsync(fetch(`${server.url}/snapshots`));
});

test('options are checked', async (t) => {
  const f = t.context.fixture;
  await t.throwsAsync(serve(t, f, { maxConcurrentRequests: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(serve(t, f, { listen: { host: '127.0.0.1', port: 70000 } }), {
    instanceOf: RangeError,
  });
  await t.throwsAsync(serve(t, f, { token: '' }), { instanceOf: TypeError });
  await t.throwsAsync(serve(t, f, { store: join(f.storeDir, 'missing') }), {
    code: 'ERR_LR_STORE_NOT_FOUND',
  });
});
