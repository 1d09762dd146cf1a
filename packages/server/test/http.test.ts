import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { readIndex, toHex } from '@liverestore/format';
import { imageBytes } from '@liverestore/testkit';
import { pino } from 'pino';
import { startChunkServer } from '../src/index.js';
import {
  CHUNK_BYTES,
  DRIVE_SIZES,
  errorOf,
  type Fixture,
  fixtureTest,
  get,
  MiB,
  prng,
  rawRequest,
  serve,
} from './helpers.js';

const test = fixtureTest();

function imageUrl(base: string, f: Fixture, drive = 0): string {
  return `${base}/snapshots/${f.snapshot}/${f.drives[drive]!.name}.img`;
}

test('GET /snapshots lists the snapshot and its archives like `snapshots --json`', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const { status, headers, body } = await get(`${server.url}/snapshots`);
  t.is(status, 200);
  t.regex(headers.get('content-type') ?? '', /^application\/json/);
  const list = JSON.parse(body.toString()) as {
    snapshot: string;
    type: string;
    id: string;
    time: number;
    archives: { name: string; filename: string; kind: string; sizeBytes: number; cryptMode: string }[];
  }[];
  t.is(list.length, 1);
  const [s] = list;
  t.is(s!.snapshot, f.snapshot);
  t.is(s!.type, 'vm');
  t.is(s!.id, '100');
  t.is(typeof s!.time, 'number');
  t.deepEqual(
    s!.archives.map((a) => [a.name, a.filename, a.kind, a.cryptMode]),
    [
      ['drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed', 'none'],
      ['drive-scsi1.img', 'drive-scsi1.img.fidx', 'fixed', 'none'],
      ['notes.txt', 'notes.txt.didx', 'dynamic', 'none'],
    ],
  );
  t.deepEqual(
    s!.archives.map((a) => a.sizeBytes),
    [...DRIVE_SIZES, f.notes.length],
  );
});

test('raw index and manifest files are byte-equal to the files on disk', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  for (const name of ['drive-scsi0.img.fidx', 'drive-scsi1.img.fidx', 'notes.txt.didx', 'index.json.blob']) {
    const { status, headers, body } = await get(`${server.url}/snapshots/${f.snapshot}/${name}`);
    t.is(status, 200, name);
    t.is(headers.get('content-type'), 'application/octet-stream');
    const disk = await readFile(join(f.storeDir, f.snapshot, name));
    t.is(headers.get('content-length'), String(disk.length));
    t.true(body.equals(disk), name);
  }
  const missing = await get(`${server.url}/snapshots/${f.snapshot}/nope.img.fidx`);
  t.is(missing.status, 404);
  t.is(errorOf(missing.body).code, 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND');
  const noSnap = await get(`${server.url}/snapshots/vm/101/2020-01-01T00:00:00Z/index.json.blob`);
  t.is(noSnap.status, 404);
  t.is(errorOf(noSnap.body).code, 'ERR_LR_SNAPSHOT_NOT_FOUND');
  t.false(errorOf(noSnap.body).message.includes(f.storeDir), 'no server path in messages');
});

test('GET /chunks/{digest} serves the chunk file; bad digests are 400, missing 404', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const index = readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi1.img.fidx')));
  for (const i of [0, index.chunkCount - 1]) {
    const hex = toHex(index.digestAt(i));
    const { status, body } = await get(`${server.url}/chunks/${hex}`);
    t.is(status, 200);
    t.true(body.equals(await readFile(join(f.storeDir, '.chunks', hex.slice(0, 4), hex))));
  }
  const hex = toHex(index.digestAt(0));
  for (const bad of [hex.slice(1), hex.toUpperCase(), `${hex}0`, 'zz'.repeat(32)]) {
    const res = await get(`${server.url}/chunks/${bad}`);
    t.is(res.status, 400, bad);
    t.is(errorOf(res.body).code, 'ERR_LR_DIGEST_INVALID');
  }
  const traversal = await rawRequest(server.url, '/chunks/../x');
  t.is(traversal.status, 400);
  const missing = await get(`${server.url}/chunks/${'0'.repeat(64)}`);
  t.is(missing.status, 404);
  t.is(errorOf(missing.body).code, 'ERR_LR_CHUNK_MISSING');
});

test("chunk and snapshot files answer Range (resumable fetches); a chunk's ETag is its digest", async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const index = readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi1.img.fidx')));
  const hex = toHex(index.digestAt(0));
  const file = await readFile(join(f.storeDir, '.chunks', hex.slice(0, 4), hex));
  const url = `${server.url}/chunks/${hex}`;
  const whole = await get(url);
  t.is(whole.headers.get('accept-ranges'), 'bytes');
  t.is(whole.headers.get('etag'), `"${hex}"`);
  const from = Math.floor(file.length / 3);
  const rest = await get(url, { range: `bytes=${from}-` });
  t.is(rest.status, 206);
  t.is(rest.headers.get('content-range'), `bytes ${from}-${file.length - 1}/${file.length}`);
  t.true(rest.body.equals(file.subarray(from)));
  const middle = await get(url, { range: 'bytes=10-19', 'if-range': `"${hex}"` });
  t.is(middle.status, 206);
  t.true(middle.body.equals(file.subarray(10, 20)));
  const stale = await get(url, { range: 'bytes=10-19', 'if-range': '"something-else"' });
  t.is(stale.status, 200, 'If-Range that does not match gives the whole file');
  t.true(stale.body.equals(file));
  const past = await get(url, { range: `bytes=${file.length}-` });
  t.is(past.status, 416);
  t.is(past.headers.get('content-range'), `bytes */${file.length}`);
  t.is(errorOf(past.body).code, 'ERR_LR_HTTP_RANGE_NOT_SATISFIABLE');
  const garbage = await get(url, { range: 'bytes=x-y' });
  t.is(garbage.status, 400);
  t.is(errorOf(garbage.body).code, 'ERR_LR_HTTP_BAD_RANGE');
  const fidx = await get(`${server.url}/snapshots/${f.snapshot}/drive-scsi1.img.fidx`, {
    range: 'bytes=0-3',
  });
  t.is(fidx.status, 206);
  t.is(fidx.body.length, 4);
});

test('GET of an image returns the whole source image with ETag and Accept-Ranges', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  for (let d = 0; d < f.drives.length; d++) {
    const { status, headers, body } = await get(imageUrl(server.url, f, d));
    t.is(status, 200);
    t.is(headers.get('accept-ranges'), 'bytes');
    t.is(headers.get('content-length'), String(DRIVE_SIZES[d]));
    t.regex(headers.get('etag') ?? '', /^"[0-9a-f]{64}"$/);
    t.is(body.length, DRIVE_SIZES[d]!);
    t.true(body.equals(imageBytes(f.drives[d]!.spec, 0, DRIVE_SIZES[d]!)));
  }
  // Without the .img extension the archive resolves the PBS way.
  const short = await get(`${server.url}/snapshots/${f.snapshot}/drive-scsi0`, { range: 'bytes=0-9' });
  t.is(short.status, 206);
});

test('30 random Range requests return 206 with exactly those bytes', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const size = DRIVE_SIZES[1]!;
  const spec = f.drives[1]!.spec;
  const random = prng(7);
  const cases: { header: string; start: number; end: number }[] = [
    // Across a chunk border, the last partial chunk, open-ended and suffix forms.
    { header: `bytes=${CHUNK_BYTES - 10}-${CHUNK_BYTES + 9}`, start: CHUNK_BYTES - 10, end: CHUNK_BYTES + 9 },
    { header: `bytes=${12 * MiB}-`, start: 12 * MiB, end: size - 1 },
    { header: 'bytes=-1000', start: size - 1000, end: size - 1 },
    { header: `bytes=-${size + 5}`, start: 0, end: size - 1 },
    { header: `bytes=${size - 1}-${size + 100}`, start: size - 1, end: size - 1 },
    { header: 'bytes=0-0', start: 0, end: 0 },
  ];
  while (cases.length < 30) {
    const start = Math.floor(random() * size);
    const length = 1 + Math.floor(random() * 3 * CHUNK_BYTES);
    const end = Math.min(size - 1, start + length - 1);
    const form = random();
    if (form < 0.15) cases.push({ header: `bytes=${start}-`, start, end: size - 1 });
    else if (form < 0.3)
      cases.push({ header: `bytes=-${length}`, start: Math.max(0, size - length), end: size - 1 });
    else cases.push({ header: `bytes=${start}-${end}`, start, end });
  }
  for (const c of cases) {
    const { status, headers, body } = await get(imageUrl(server.url, f, 1), { range: c.header });
    t.is(status, 206, c.header);
    t.is(headers.get('content-range'), `bytes ${c.start}-${c.end}/${size}`, c.header);
    t.is(headers.get('content-length'), String(c.end - c.start + 1), c.header);
    t.true(body.equals(imageBytes(spec, c.start, c.end - c.start + 1)), c.header);
  }
});

test('unsatisfiable ranges are 416 with Content-Range, bad syntax 400, several ranges the full 200', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const size = DRIVE_SIZES[0]!;
  const url = imageUrl(server.url, f, 0);
  for (const header of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0']) {
    const res = await get(url, { range: header });
    t.is(res.status, 416, header);
    t.is(res.headers.get('content-range'), `bytes */${size}`);
    t.is(errorOf(res.body).code, 'ERR_LR_HTTP_RANGE_NOT_SATISFIABLE');
  }
  for (const header of ['bytes=5-1', 'items=0-1', 'bytes=a-b', 'bytes=-', 'bytes=1-2-3']) {
    const res = await get(url, { range: header });
    t.is(res.status, 400, header);
    t.is(errorOf(res.body).code, 'ERR_LR_HTTP_BAD_RANGE');
  }
  const multi = await get(url, { range: 'bytes=0-9,100-199' });
  t.is(multi.status, 200);
  t.is(multi.body.length, size);
});

test('HEAD gives the headers and no body', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const full = await rawRequest(server.url, `/snapshots/${f.snapshot}/drive-scsi0.img`, { method: 'HEAD' });
  t.is(full.status, 200);
  t.is(full.headers['content-length'], String(DRIVE_SIZES[0]));
  t.is(full.headers['accept-ranges'], 'bytes');
  t.is(full.body.length, 0);
  const part = await rawRequest(server.url, `/snapshots/${f.snapshot}/drive-scsi0.img`, {
    method: 'HEAD',
    headers: { range: 'bytes=10-19' },
  });
  t.is(part.status, 206);
  t.is(part.headers['content-length'], '10');
  t.is(part.headers['content-range'], `bytes 10-19/${DRIVE_SIZES[0]}`);
  t.is(part.body.length, 0);
});

test('the ETag is stable (the index checksum) and If-None-Match gives 304', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const url = imageUrl(server.url, f, 0);
  const a = await get(url, { range: 'bytes=0-0' });
  const b = await get(url, {}, 'HEAD');
  const etag = a.headers.get('etag')!;
  t.is(b.headers.get('etag'), etag);
  const index = readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi0.img.fidx')));
  t.is(etag, `"${toHex(index.indexCsum)}"`);
  const other = await serve(t, f);
  t.is((await get(imageUrl(other.url, f, 0), {}, 'HEAD')).headers.get('etag'), etag);
  const cached = await get(url, { 'if-none-match': etag });
  t.is(cached.status, 304);
  t.is(cached.body.length, 0);
  t.is(cached.headers.get('etag'), etag);
  t.is((await get(url, { 'if-none-match': `"${'0'.repeat(64)}"`, range: 'bytes=0-0' })).status, 206);
  // If-Range with another ETag: the range is ignored, the whole image comes back.
  const ifRange = await get(url, { range: 'bytes=0-0', 'if-range': `"${'1'.repeat(64)}"` });
  t.is(ifRange.status, 200);
  t.is(ifRange.body.length, DRIVE_SIZES[0]!);
});

test('unknown routes are 404, other methods 405 with Allow, dynamic archives are not images', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  for (const path of ['/', '/nope', '/snapshots/vm/100', '/chunks']) {
    const res = await get(`${server.url}${path}`);
    t.is(res.status, 404, path);
    t.is(errorOf(res.body).code, 'ERR_LR_HTTP_NOT_FOUND');
  }
  const post = await fetch(`${server.url}/snapshots`, { method: 'POST', body: 'x' });
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'GET, HEAD');
  t.is(((await post.json()) as { error: { code: string } }).error.code, 'ERR_LR_HTTP_METHOD_NOT_ALLOWED');
  const notes = await get(`${server.url}/snapshots/${f.snapshot}/notes.txt`);
  t.is(notes.status, 404);
  t.is(errorOf(notes.body).code, 'ERR_LR_ARCHIVE_NOT_FOUND');
  const absent = await get(`${server.url}/snapshots/${f.snapshot}/drive-virtio9.img`);
  t.is(absent.status, 404);
  t.is(errorOf(absent.body).code, 'ERR_LR_ARCHIVE_NOT_FOUND');
  for (const path of ['/snapshots/xx/100/2026-01-01T00:00:00Z/a.img', '/snapshots/vm/100/yesterday/a.img']) {
    const res = await get(`${server.url}${path}`);
    t.is(res.status, 400, path);
    t.is(errorOf(res.body).code, 'ERR_LR_HTTP_BAD_PATH');
  }
});

test('a client that goes away mid-body does not break the server', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const controller = new AbortController();
  const res = await fetch(imageUrl(server.url, f, 1), { signal: controller.signal });
  const reader = res.body!.getReader();
  await reader.read();
  controller.abort();
  await reader.cancel().catch(() => undefined);
  const again = await get(imageUrl(server.url, f, 1), { range: 'bytes=100-199' });
  t.is(again.status, 206);
  t.true(again.body.equals(imageBytes(f.drives[1]!.spec, 100, 100)));
});

test('blobs stay exact while responses share reused read buffers; cut clients leave no open files', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const hexes = new Set<string>();
  for (const drive of f.drives) {
    const index = readIndex(await readFile(join(f.storeDir, f.snapshot, `${drive.name}.img.fidx`)));
    for (let i = 0; i < index.chunkCount; i++) hexes.add(toHex(index.digestAt(i)));
  }
  const files = new Map<string, Buffer>();
  for (const hex of hexes) files.set(hex, await readFile(join(f.storeDir, '.chunks', hex.slice(0, 4), hex)));
  t.true(
    [...files.values()].some((file) => file.length > 1024 * 1024),
    'some blob is larger than one read buffer',
  );
  // Descriptors of this process open on files of the store (sockets come and go with keep-alive).
  const openFiles = async (): Promise<number> => {
    let n = 0;
    for (const fd of await readdir('/proc/self/fd')) {
      const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
      if (target.startsWith(f.storeDir)) n++;
    }
    return n;
  };
  for (let round = 0; round < 3; round++) {
    await Promise.all(
      [...files].map(async ([hex, file], i) => {
        const url = `${server.url}/chunks/${hex}`;
        if ((i + round) % 3 === 0) {
          // Goes away after the first bytes, while its response still holds read buffers.
          const controller = new AbortController();
          const res = await fetch(url, { signal: controller.signal });
          const reader = res.body!.getReader();
          await reader.read();
          controller.abort();
          await reader.cancel().catch(() => undefined);
          return;
        }
        const { status, body } = await get(url);
        t.is(status, 200);
        t.true(body.equals(file), `chunk ${hex} round ${round}`);
      }),
    );
  }
  // Every response has closed its file, the cut ones included (a moment for their close()).
  for (let i = 0; i < 50 && (await openFiles()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(await openFiles(), 0);
});

test('without a cache option the server makes its own and closes it on close()', async (t) => {
  const f = t.context.fixture;
  const server = await startChunkServer({
    store: f.storeDir,
    listen: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => server.close());
  t.regex(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.true(server.port > 0);
  const res = await get(imageUrl(server.url, f, 0), { range: 'bytes=5000000-5000999' });
  t.is(res.status, 206);
  t.true(res.body.equals(imageBytes(f.drives[0]!.spec, 5_000_000, 1000)));
  const metrics = (await get(`${server.url}/metrics`)).body.toString();
  t.regex(metrics, new RegExp(`liverestore_cache_capacity_bytes ${256 * MiB}\\b`));
  await server.close();
  await t.throwsAsync(fetch(`${server.url}/snapshots`));
});
